"""Chat events → OpenAI response objects (engine events → text completions). Non-streaming is
"collect the stream"."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import AsyncIterator

from localgw.chat.events import (ChatEvent, ChoiceStart, Finish, ReasoningDelta, TextDelta,
                                 ToolCallDelta, UsageCounts)
from localgw.engine.types import ChoiceDone, PromptDone, TokenLogprob, TokenText


def new_id(prefix: str, sep: str = "-") -> str:
    """`chatcmpl-…` for OpenAI's chat ids; Anthropic and Responses ids use `_`."""
    return f"{prefix}{sep}{secrets.token_hex(12)}"


def chat_logprob(lp: TokenLogprob) -> dict:
    return {"token": lp.token, "logprob": lp.logprob, "bytes": lp.bytes,
            "top_logprobs": [{"token": t.token, "logprob": t.logprob, "bytes": t.bytes}
                             for t in lp.top]}


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    def to_dict(self) -> dict:
        return usage_dict(self)


def usage_dict(usage: Usage | UsageCounts) -> dict:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens}}


# what the `reasoning_field` setting names: the delta fields reasoning text goes out in
REASONING_FIELDS = {"both": ("reasoning_content", "reasoning"),
                    "reasoning_content": ("reasoning_content",), "reasoning": ("reasoning",)}


@dataclass
class ChatChunker:
    """Chat events in, `chat.completion.chunk` dicts out: one chunk per event, but usage counts,
    which the last chunk reports (`usage_chunk`) when the stream asked for it."""

    model: str
    include_usage: bool = False        # end the stream with a usage chunk
    reasoning_fields: tuple[str, ...] = REASONING_FIELDS["both"]
    id: str = field(default_factory=lambda: new_id("chatcmpl"))
    created: int = field(default_factory=lambda: int(time.time()))
    usage: UsageCounts = field(default_factory=UsageCounts)

    def _chunk(self, index: int, delta: dict, finish_reason=None, logprobs=None) -> dict:
        choice = {"index": index, "delta": delta, "logprobs": logprobs,
                  "finish_reason": finish_reason}
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "system_fingerprint": None, "choices": [choice]}

    def chunk(self, event: ChatEvent) -> dict | None:
        kind = type(event)
        if kind is TextDelta:
            return self._chunk(event.index, {"content": event.text},
                               logprobs=_logprobs(event.logprob))
        if kind is ReasoningDelta:
            return self._chunk(event.index, dict.fromkeys(self.reasoning_fields, event.text),
                               logprobs=_logprobs(event.logprob))
        if kind is ToolCallDelta:
            if event.id is not None:
                call = {"index": event.call, "id": event.id, "type": "function",
                        "function": {"name": event.name, "arguments": event.arguments}}
            else:
                call = {"index": event.call, "function": {"arguments": event.arguments}}
            return self._chunk(event.index, {"tool_calls": [call]},
                               logprobs=_logprobs(event.logprob))
        if kind is ChoiceStart:
            return self._chunk(event.index, {"role": "assistant", "content": ""})
        if kind is Finish:
            last = self._chunk(event.index, {}, finish_reason=event.reason)
            if event.stop_sequence is not None:  # vLLM's field: which stop string matched
                last["choices"][0]["stop_reason"] = event.stop_sequence
            return last
        if kind is UsageCounts:
            self.usage = event
        return None

    def usage_chunk(self) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "system_fingerprint": None, "choices": [],
                "usage": usage_dict(self.usage)}

    async def render(self, events: AsyncIterator[ChatEvent]) -> AsyncIterator[dict]:
        """The chunks of a chat's events, and the usage chunk last if it was asked for."""
        async for event in events:
            chunk = self.chunk(event)
            if chunk is not None:
                yield chunk
        if self.include_usage:
            yield self.usage_chunk()


def _logprobs(lp: TokenLogprob | None) -> dict | None:
    return {"content": [chat_logprob(lp)]} if lp else None


def chunk_events(chunk: dict, started: set[int]) -> list[ChatEvent]:
    """One OpenAI chat chunk (an upstream's) read as chat events; `started` holds the choices
    seen so far, whose first chunk opens them."""
    out: list[ChatEvent] = []
    for choice in chunk.get("choices") or ():
        index = choice["index"]
        if index not in started:
            started.add(index)
            out.append(ChoiceStart(index))
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            out.append(ReasoningDelta(index, reasoning))
        if delta.get("content"):
            out.append(TextDelta(index, delta["content"]))
        for call in delta.get("tool_calls") or ():
            fn = call.get("function") or {}
            out.append(ToolCallDelta(index, call["index"], call.get("id") or None,
                                     fn.get("name"), fn.get("arguments") or ""))
        if choice.get("finish_reason"):
            out.append(Finish(index, choice["finish_reason"], choice.get("stop_reason")))
    return out


async def read_chunks(chunks: AsyncIterator[dict], usage: Usage) -> AsyncIterator[ChatEvent]:
    """An upstream's chat chunks as chat events. `usage` is the total its reader counts from the
    stream; its counts go out whenever they changed, before the chunk that follows."""
    started: set[int] = set()
    counts = UsageCounts()
    async for chunk in chunks:
        now = UsageCounts(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
        if now != counts:
            counts = now
            yield now
        for event in chunk_events(chunk, started):
            yield event


def collect_chat(chunks: list[dict], usage: Usage) -> dict:
    """The `chat.completion` a list of chunks adds up to."""
    choices: dict[int, dict] = {}
    meta = chunks[0] if chunks else {"id": new_id("chatcmpl"), "created": int(time.time()),
                                      "model": ""}
    for chunk in chunks:
        for c in chunk["choices"]:
            choice = choices.setdefault(c["index"], {
                "index": c["index"], "message": {"role": "assistant", "content": None},
                "logprobs": None, "finish_reason": None, "_calls": {}})
            msg, delta = choice["message"], c["delta"]
            if delta.get("content"):
                msg["content"] = (msg["content"] or "") + delta["content"]
            for key in ("reasoning_content", "reasoning"):
                if delta.get(key):
                    msg[key] = msg.get(key, "") + delta[key]
            for call in delta.get("tool_calls") or []:
                slot = choice["_calls"].setdefault(call["index"], {
                    "id": call.get("id"), "type": "function",
                    "function": {"name": "", "arguments": ""}})
                fn = call.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
            if c.get("logprobs"):
                choice["logprobs"] = choice["logprobs"] or {"content": [], "refusal": None}
                choice["logprobs"]["content"] += c["logprobs"]["content"]
            if c.get("finish_reason"):
                choice["finish_reason"] = c["finish_reason"]
    out = []
    for index in sorted(choices):
        choice = choices[index]
        calls = choice.pop("_calls")
        if calls:
            choice["message"]["tool_calls"] = [calls[i] for i in sorted(calls)]
        elif choice["message"]["content"] is None:
            choice["message"]["content"] = ""
        out.append(choice)
    return {"id": meta["id"], "object": "chat.completion", "created": meta["created"],
            "model": meta["model"], "system_fingerprint": None, "choices": out,
            "usage": usage.to_dict()}


@dataclass
class TextChunker:
    """Builds legacy `text_completion` chunks; `index_base` places one prompt's choices."""

    model: str
    id: str = field(default_factory=lambda: new_id("cmpl"))
    created: int = field(default_factory=lambda: int(time.time()))
    usage: Usage = field(default_factory=Usage)
    index_base: int = 0
    echo_prefix: str = ""
    _started: set = field(default_factory=set)
    _offsets: dict = field(default_factory=dict)

    def _chunk(self, index: int, text: str, finish_reason=None, logprobs=None) -> dict:
        return {"id": self.id, "object": "text_completion", "created": self.created,
                "model": self.model, "system_fingerprint": None,
                "choices": [{"index": self.index_base + index, "text": text,
                             "logprobs": logprobs, "finish_reason": finish_reason}]}

    def _echo(self, index: int) -> list[dict]:
        if index in self._started:
            return []
        self._started.add(index)
        self._offsets[index] = len(self.echo_prefix)
        return [self._chunk(index, self.echo_prefix)] if self.echo_prefix else []

    def on_event(self, event) -> list[dict]:
        if isinstance(event, PromptDone):
            self.usage.prompt_tokens += event.prompt_tokens
            self.usage.cached_tokens += event.cached_tokens
            return []
        if isinstance(event, TokenText):
            out = self._echo(event.index)
            logprobs = None
            if event.logprob:
                lp = event.logprob
                logprobs = {"tokens": [lp.token], "token_logprobs": [lp.logprob],
                            "top_logprobs": [{t.token: t.logprob for t in lp.top}],
                            "text_offset": [self._offsets[event.index]]}
            self._offsets[event.index] += len(event.text)
            if event.text or logprobs:
                out.append(self._chunk(event.index, event.text, logprobs=logprobs))
            return out
        if isinstance(event, ChoiceDone):
            self.usage.completion_tokens += event.completion_tokens
            return self._echo(event.index) + [self._chunk(event.index, "", event.finish_reason)]
        return []


def collect_text(chunks: list[dict], usage: Usage, model: str, id_: str, created: int) -> dict:
    choices: dict[int, dict] = {}
    for chunk in chunks:
        for c in chunk["choices"]:
            choice = choices.setdefault(c["index"], {"index": c["index"], "text": "",
                                                     "logprobs": None, "finish_reason": None})
            choice["text"] += c["text"]
            if c.get("logprobs"):
                lp = choice["logprobs"] = choice["logprobs"] or {
                    "tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
                for key in lp:
                    lp[key] += c["logprobs"][key]
            if c.get("finish_reason"):
                choice["finish_reason"] = c["finish_reason"]
    return {"id": id_, "object": "text_completion", "created": created, "model": model,
            "system_fingerprint": None, "choices": [choices[i] for i in sorted(choices)],
            "usage": usage.to_dict()}


# one encoder for every frame: json.dumps with its own separators builds a new one per call
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def sse(data: dict | str) -> bytes:
    payload = data if isinstance(data, str) else _encode(data)
    return f"data: {payload}\n\n".encode("utf-8")
