"""What a chat template means for parsing and forcing output: one record per template."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache

from localgw.chat.families import template_traits

THINK = ("<think>", "</think>")
MISTRAL_THINK = ("[THINK]", "[/THINK]")


@dataclass(frozen=True)
class ChatFormat:
    family: str
    tool_format: str                        # a key of toolcalls.PARSERS, or "harmony"
    reasoning: tuple[str, str] | str | None  # (open, close), "harmony", or None
    native_tools: bool
    preserved: tuple[str, ...] = field(default=())  # control tokens the parsers must see
    xml_tool_args: bool = False             # <function=…><parameter=…> bodies
    mistral_v11: bool = False               # name[ARGS]{…} rather than a JSON list
    fenced_json: bool = False               # DeepSeek-R1: function<sep>name ```json {…} ```
    call_syntax: str | None = None          # how to call, when we describe the tools ourselves


@lru_cache(maxsize=64)
def chat_format(template: str | None) -> ChatFormat:
    traits = template_traits(template)
    text = template or ""
    think = THINK if "<think>" in text or "</think>" in text else None
    fam = traits.family
    if fam == "gpt-oss":
        return ChatFormat(fam, "harmony", "harmony", True,
                          ("<|channel|>", "<|message|>", "<|end|>", "<|start|>", "<|constrain|>"))
    if fam == "deepseek":
        fenced = "```json" in text
        syntax = ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>TOOL_NAME\n```json\n"
                  "ARGUMENTS\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>" if fenced else
                  "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>TOOL_NAME<｜tool▁sep｜>ARGUMENTS"
                  "<｜tool▁call▁end｜><｜tool▁calls▁end｜>")
        return ChatFormat(fam, "deepseek", think, traits.supports_tools,
                          ("<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>",
                           "<｜tool▁call▁end｜>", "<｜tool▁calls▁end｜>", *THINK),
                          fenced_json=fenced, call_syntax=syntax)
    if fam == "mistral":
        reasoning = MISTRAL_THINK if "[THINK]" in text else None
        return ChatFormat(fam, "mistral", reasoning, True,
                          ("[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", *MISTRAL_THINK),
                          mistral_v11="[ARGS]" in text)
    if fam in ("hermes", "qwen3-coder"):
        return ChatFormat(fam, "hermes", think, True, ("<tool_call>", "</tool_call>", *THINK),
                          xml_tool_args=fam == "qwen3-coder")
    if fam == "llama3":
        return ChatFormat(fam, "llama3", think, traits.supports_tools, ("<|python_tag|>",))
    return ChatFormat(fam, "generic", think, False, THINK if think else (),
                      call_syntax='{"tool_calls": [{"name": TOOL_NAME, "arguments": ARGUMENTS}]}')


def starts_in_reasoning(fmt: ChatFormat, prompt: str) -> bool:
    """Templates like DeepSeek-R1's end the prompt with `<think>`: the reply starts inside it."""
    return isinstance(fmt.reasoning, tuple) and prompt.rstrip().endswith(fmt.reasoning[0])


TOOLS_PROMPT = (
    "You can call tools. The tools, as JSON schemas:\n{tools}\n\n"
    "To call tools, reply with only this and nothing else:\n{syntax}\n"
    "where ARGUMENTS is a JSON object. Otherwise, answer normally.")


def describe_tools(messages: list[dict], tools: list[dict], syntax: str) -> list[dict]:
    """For templates that do not render tool definitions: put them in the system message."""
    described = json.dumps([{"name": t["function"]["name"],
                             "description": t["function"].get("description", ""),
                             "parameters": t["function"].get("parameters") or {}}
                            for t in tools], ensure_ascii=False)
    prompt = TOOLS_PROMPT.format(tools=described, syntax=syntax)
    out = list(messages)
    if out and out[0]["role"] == "system":
        out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{prompt}"}
    else:
        out.insert(0, {"role": "system", "content": prompt})
    return out


def generic_history(messages: list[dict]) -> list[dict]:
    """Earlier calls and results as plain text, for templates that know nothing of tools."""
    out: list[dict] = []
    for msg in messages:
        msg = dict(msg)
        if msg.get("tool_calls"):
            calls = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                     for c in msg.pop("tool_calls")]
            msg["content"] = ((msg.get("content") or "") + json.dumps(
                {"tool_calls": calls}, ensure_ascii=False)).strip()
        if msg["role"] == "tool":
            msg = {"role": "user", "content": f"Tool result ({msg.get('tool_call_id', '')}): "
                                              f"{msg.get('content') or ''}"}
        out.append(msg)
    return out
