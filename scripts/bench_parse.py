#!/usr/bin/env python3
"""CPU time of output parsing: one long reply per format, fed to MessageParser a token at a time.

    .venv/bin/python scripts/bench_parse.py                 # 8,000 tokens of ~4 characters each
    .venv/bin/python scripts/bench_parse.py --tokens 2000 --only hermes,qwen3-coder

The common heavy case is a tool call whose string argument is a whole file (a coding agent
writing it): each case is that call in the family's own format, streamed in pieces the size of
a token. Two more cases: a long `<think>` block before a call, and a long plain answer while
tools are offered. Each case checks that the parsed result is the reply it was fed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localgw.chat.formats import chat_format  # noqa: E402
from localgw.chat.output import MessageParser  # noqa: E402
from localgw.chat.responses import ChatChunker, Usage, collect_chat  # noqa: E402

TEMPLATES = ROOT / "tests" / "data" / "templates"
TOOLS = [{"type": "function", "function": {"name": "write_file", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
    "required": ["path", "content"]}}}]
PIECE = 4  # characters per token, about what a tokenizer gives for code


def file_text(chars: int) -> str:
    """Something like source code: lines with quotes, backslashes and indentation."""
    lines, n = [], 0
    while n < chars:
        i = len(lines)
        line = f'    value_{i} = compute("item {i}", path="C:\\\\tmp\\\\{i}")  # step {i}'
        lines.append(line)
        n += len(line) + 1
    return "\n".join(lines)[:chars].rstrip()


def call_text(family: str, body: str) -> str:
    """A reply that calls write_file(path, content=body) in `family`'s format."""
    args = json.dumps({"path": "main.py", "content": body})
    if family == "qwen3-coder":
        return ("<tool_call>\n<function=write_file>\n<parameter=path>\nmain.py\n</parameter>\n"
                f"<parameter=content>\n{body}\n</parameter>\n</function>\n</tool_call>")
    return {
        "hermes": f'<tool_call>\n{{"name": "write_file", "arguments": {args}}}\n</tool_call>',
        "llama3": f'<|python_tag|>{{"name": "write_file", "parameters": {args}}}',
        "mistral-v3": f'[TOOL_CALLS][{{"name": "write_file", "arguments": {args}}}]',
        "mistral-v11": f"[TOOL_CALLS]write_file[ARGS]{args}",
        "deepseek-v3": ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>write_file<｜tool▁sep｜>"
                        f"{args}<｜tool▁call▁end｜><｜tool▁calls▁end｜>"),
        "deepseek-r1": ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>write_file\n"
                        f"```json\n{args}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"),
        "harmony": ("<|channel|>commentary to=functions.write_file <|constrain|>json<|message|>"
                    f"{args}<|call|>"),
        "generic": f'{{"tool_calls": [{{"name": "write_file", "arguments": {args}}}]}}',
    }[family]


CASES = {  # name: (template, how the reply is built)
    "hermes": ("Qwen-Qwen2.5-7B-Instruct.jinja", "hermes"),
    "qwen3-coder": ("Qwen3-Coder.jinja", "qwen3-coder"),
    "llama3": ("meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3"),
    "mistral-v3": ("mistralai-Mistral-Nemo-Instruct-2407.jinja", "mistral-v3"),
    "mistral-v11": ("Mistral-Small-3.2-24B-Instruct-2506.jinja", "mistral-v11"),
    "deepseek-v3": ("deepseek-ai-DeepSeek-V3.1.jinja", "deepseek-v3"),
    "deepseek-r1": ("deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", "deepseek-r1"),
    "harmony": ("openai-gpt-oss-120b.jinja", "harmony"),
    "generic": ("google-gemma-2-2b-it.jinja", "generic"),
    "think-then-call": ("Qwen-Qwen3-0.6B.jinja", "think"),
    "plain-answer": ("Qwen-Qwen2.5-7B-Instruct.jinja", "plain"),
}


def reply(kind: str, chars: int) -> tuple[str, dict]:
    """The reply text and what the parse must give (content, reasoning, the call's arguments)."""
    body = file_text(chars)
    if kind == "plain":
        return body, {"content": body}
    if kind == "think":
        call = call_text("hermes", "print(1)")
        return (f"<think>\n{body}\n</think>\n\n{call}",
                {"reasoning": body.strip(), "arguments": {"path": "main.py", "content": "print(1)"}})
    return call_text(kind, body), {"arguments": {"path": "main.py", "content": body}}


def run_case(template: str, kind: str, tokens: int) -> tuple[float, int]:
    """Feed one reply a piece at a time; CPU seconds spent in the parser, and the piece count."""
    fmt = chat_format((TEMPLATES / template).read_text())
    text, want = reply(kind, tokens * PIECE)
    pieces = [text[i:i + PIECE] for i in range(0, len(text), PIECE)]
    parser = MessageParser(fmt, tools=TOOLS)
    deltas = []
    start = time.process_time()
    for piece in pieces:
        deltas += parser.feed(piece)
    deltas += parser.finish()
    spent = time.process_time() - start
    check(deltas, want)
    return spent, len(pieces)


def check(deltas: list, want: dict) -> None:
    chunker = ChatChunker("m")
    chunks = [chunker.chunk(d) for d in deltas]
    message = collect_chat(chunks, Usage())["choices"][0]["message"]
    if "content" in want:
        assert message["content"] == want["content"], "content differs"
    if "reasoning" in want:
        assert message["reasoning_content"] == want["reasoning"], "reasoning differs"
    if "arguments" in want:
        (call,) = message["tool_calls"]
        assert json.loads(call["function"]["arguments"]) == want["arguments"], "arguments differ"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=8000, help="length of the long part, in tokens")
    ap.add_argument("--only", default="", help="comma-separated case names (default: all)")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(CASES)
    total = 0.0
    for name in names:
        spent, pieces = run_case(*CASES[name], args.tokens)
        total += spent
        print(f"{name:16} {pieces:6} pieces  {spent:8.3f} s CPU", flush=True)
    print(f"{'total':16} {'':13} {total:8.3f} s CPU")


if __name__ == "__main__":
    main()
