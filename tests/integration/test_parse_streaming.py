"""A tool call with one long argument (a model writing a file) streams while the server keeps
answering: the reply is parsed a token at a time on the event loop, in time linear in its length,
so /health never waits behind it."""

from __future__ import annotations

import json
import re
import statistics
import threading
import time

import httpx
import jsonschema

from localgw.gguf import read_gguf
from tests.helpers import smollm2_path
from tests.integration.conftest import MODEL_ID

CONTENT = {"type": "object", "properties": {"content": {"type": "string"}}, "required": ["content"]}
WRITE_FILE = {"type": "function", "function": {
    "name": "write_file", "description": "Write a whole file", "parameters": CONTENT}}
MAX_TOKENS = 300  # the argument runs to the end (quote_bias); decoding under a grammar is slow here
# A free event loop answers /health in milliseconds; one blocked by parsing would answer late
# for as long as the reply streams. The bounds leave room for a busy shared machine.
SLOWEST, TYPICAL = 1.0, 0.1


def quote_bias() -> dict[str, float]:
    """A logit bias that keeps the argument's string open: every token with a `"` is pushed
    away except those that can open a string but not close it (`"` and then characters that may
    not follow a closed string, such as `",`). The grammar still decides what is valid."""
    tokens = read_gguf(smollm2_path()).metadata["tokenizer.ggml.tokens"]
    return {str(i): -100 for i, t in enumerate(tokens)
            if '"' in t and not re.fullmatch(r'"[^"\s}\\ĠĊ]+', t)}


class HealthPoller(threading.Thread):
    """Asks /health again and again until stopped; keeps each answer's status (or error) and
    seconds."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.answers, self.stop = url, [], threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while True:  # at least once
                start = time.perf_counter()
                try:
                    status = client.get("/health").status_code
                except httpx.HTTPError as exc:  # a timeout too: kept, and the test fails on it
                    status = repr(exc)
                self.answers.append((status, time.perf_counter() - start))
                if self.stop.wait(0.05):
                    return


def stream_chat(http: httpx.Client, body: dict) -> tuple[list[str], list[dict]]:
    """The raw lines of a streamed chat, and the chunks they hold."""
    lines, chunks = [], []
    with http.stream("POST", "/v1/chat/completions", json=body, timeout=900) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line:
                lines.append(line)
                if line != "data: [DONE]":
                    chunks.append(json.loads(line.removeprefix("data: ")))
    return lines, chunks


def test_a_long_streamed_argument_leaves_the_server_answering(server, http):
    body = {"model": MODEL_ID, "stream": True, "max_tokens": MAX_TOKENS, "temperature": 0.7,
            "seed": 3, "messages": [{"role": "user", "content": "Write a long Python module to main.py."}],
            "tools": [WRITE_FILE], "tool_choice": {"type": "function", "function": {"name": "write_file"}},
            "logit_bias": quote_bias(), "stream_options": {"include_usage": True}}
    poller = HealthPoller(server.url)
    poller.start()
    try:
        lines, chunks = stream_chat(http, body)
    finally:
        poller.stop.set()
        poller.join()

    assert lines[-1] == "data: [DONE]" and lines.count("data: [DONE]") == 1
    assert all(line.startswith("data: ") for line in lines)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    deltas = [choice["delta"] for c in chunks for choice in c["choices"]]
    finish = [choice["finish_reason"] for c in chunks for choice in c["choices"] if choice["finish_reason"]]
    assert finish == ["tool_calls"]
    assert "".join(d.get("content") or "" for d in deltas) == ""
    calls = [call for d in deltas for call in d.get("tool_calls") or []]
    assert {call["index"] for call in calls} == {0}
    first, *rest = calls
    assert first["id"].startswith("call_") and first["type"] == "function"
    assert first["function"] == {"name": "write_file", "arguments": ""}
    # a call cut by max_tokens is closed where it stopped: its arguments are still JSON
    arguments = json.loads("".join(call["function"]["arguments"] for call in rest))
    jsonschema.validate(arguments, CONTENT)
    usage = chunks[-1]["usage"]
    assert 0 < usage["completion_tokens"] <= MAX_TOKENS

    assert all(status == 200 for status, _ in poller.answers)
    seconds = [s for _, s in poller.answers]
    context = (f"/health while a {len(arguments['content'])}-character argument streamed "
               f"({usage['completion_tokens']} tokens): {len(seconds)} answers, slowest "
               f"{max(seconds):.3f}s, median {statistics.median(seconds):.3f}s")
    assert max(seconds) < SLOWEST, context
    assert statistics.median(seconds) < TYPICAL, context
