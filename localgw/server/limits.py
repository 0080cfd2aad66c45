"""Bounds that refuse absurd input before any expensive work, and the pool that does that work.

A careless or buggy client can send 100,000 messages, a body nested 5,000 deep or a schema with a
million nodes. Each bound here turns such input into a 400 that names the limit, the value and the
setting that raises it (`serve --limit NAME=VALUE`), checked in the order of cost: the raw JSON
(depth, list lengths) before pydantic sees it, the validated request before rendering, and a
character count of the conversation against the context before the template runs.

Everything CPU-heavy per request (parsing big bodies, validation, rendering, tokenizing, building
and compiling grammars) runs in `PreparePool`, a small bounded thread pool, so the event loop only
routes: `/health`, `/metrics` and running streams stay responsive while requests are prepared, and a
flood of big requests queues rather than starving the server.
"""

from __future__ import annotations

import asyncio
import re
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, TypeVar

from localgw.engine.types import Runner
from localgw.errors import ContextLengthExceeded, InvalidRequest

T = TypeVar("T")

# Bodies smaller than this are parsed on the event loop: a thread hop would cost more than it saves.
SMALL_BODY = 32 * 1024
# Chats with no more text than this and no grammar to build are rendered and tokenized on the
# event loop too: that takes less time than the two thread hops to the preparation pool and back,
# which also wait for the GIL beside the decode threads (figures in docs/benchmarks.md).
SMALL_PROMPT_CHARS = 4096


class LimitExceeded(InvalidRequest):
    code = "limit_exceeded"


@dataclass(frozen=True)
class Limits:
    """Per-request bounds; each can be raised with `serve --limit NAME=VALUE`."""

    max_messages: int = 4096        # messages in one chat request
    max_depth: int = 64             # nesting of the JSON body (objects and arrays)
    max_tools: int = 256            # tools in one request
    max_schema_nodes: int = 10_000  # objects and arrays in one JSON schema (tool or response format)
    max_enum: int = 1024            # values of one `enum`
    max_prompts: int = 256          # prompts in one /v1/completions request
    prepare_threads: int = 2        # threads that prepare requests off the event loop

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def with_overrides(self, pairs: list[str]) -> "Limits":
        """`["max_messages=10000", ...]` → new Limits; a ValueError names what is wrong."""
        changes = {}
        for pair in pairs:
            name, sep, value = pair.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in self.names():
                raise ValueError(f"{pair!r}: use NAME=VALUE with NAME one of {', '.join(self.names())}")
            try:
                number = int(value.replace("_", ""))
            except ValueError:
                raise ValueError(f"{pair!r}: the value must be a whole number") from None
            if number < 1:
                raise ValueError(f"{pair!r}: the value must be at least 1")
            changes[name] = number
        return replace(self, **changes)

    # ---- checks -----------------------------------------------------------------------------
    def exceeded(self, name: str, what: str, value: int | str, param: str | None) -> LimitExceeded:
        limit = getattr(self, name)
        return LimitExceeded(f"{what} is {value}, over the limit of {limit} ({name}; the server's "
                             f"`serve --limit {name}=N` raises it)", param=param)

    def check_count(self, name: str, what: str, count: int, param: str | None) -> None:
        if count > getattr(self, name):
            raise self.exceeded(name, what, count, param)

    def too_deep(self, depth: int | str) -> LimitExceeded:
        return self.exceeded("max_depth", "the nesting depth of the request body", depth, None)

    def check_depth(self, data: Any) -> None:
        depth = json_depth(data, stop_at=self.max_depth + 1)
        if depth > self.max_depth:
            raise self.too_deep(f"more than {self.max_depth}")

    def check_raw(self, data: Any) -> None:
        """On the parsed JSON, before validation: the lists that make validation expensive."""
        if not isinstance(data, dict):
            return
        for key, name, what in (("messages", "max_messages", "the number of messages"),
                                ("input", "max_messages", "the number of input items"),
                                ("tools", "max_tools", "the number of tools"),
                                ("prompt", "max_prompts", "the number of prompts")):
            value = data.get(key)
            if isinstance(value, list):
                self.check_count(name, what, len(value), key)

    def check_schema(self, schema: Any, param: str) -> None:
        """Size of a JSON schema and of every enum in it, walked without recursion."""
        nodes, stack = 0, [schema]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                nodes += 1
                enum = node.get("enum")
                if isinstance(enum, list):
                    self.check_count("max_enum", "the number of values in an enum", len(enum), param)
                stack.extend(node.values())
            elif isinstance(node, list):
                nodes += 1
                stack.extend(node)
            if nodes > self.max_schema_nodes:
                raise self.exceeded("max_schema_nodes", "the size of the JSON schema (objects and "
                                    "arrays)", f"more than {self.max_schema_nodes}", param)

    def check_chat(self, req) -> None:
        """On a validated ChatRequest (from any front door), before anything is rendered."""
        self.check_count("max_messages", "the number of messages", len(req.messages), "messages")
        self.check_count("max_tools", "the number of tools", len(req.tools or []), "tools")
        for i, tool in enumerate(req.tools or []):
            if tool.function.parameters is not None:
                self.check_schema(tool.function.parameters, f"tools[{i}].function.parameters")
        rf = req.response_format
        if rf is not None and rf.json_schema is not None and rf.json_schema.schema_ is not None:
            self.check_schema(rf.json_schema.schema_, "response_format.json_schema.schema")


def json_depth(data: Any, stop_at: int | None = None) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), without recursion; stops early at `stop_at`."""
    containers = (dict, list)
    deepest, stack = 0, [(data, 1)] if isinstance(data, containers) else []
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if stop_at is not None and deepest >= stop_at:
                return deepest
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, containers))
    return deepest


# ---- a cheap bound on the prompt's length -------------------------------------------------------
_token_chars: "weakref.WeakKeyDictionary[Any, int]" = weakref.WeakKeyDictionary()
_token_chars_lock = threading.Lock()


def longest_token_chars(runner: Runner) -> int | None:
    """Characters in the model's longest token (its vocabulary text), measured once per model.

    Every token covers at most this many characters of text, so a text of C characters is at
    least C / longest tokens: a lower bound on the prompt's length that needs no tokenizing.
    """
    if not runner.n_vocab:
        return None
    with _token_chars_lock:
        known = _token_chars.get(runner)
    if known is not None:
        return known
    token_text = runner.token_text
    longest = max(len(token_text(i)) for i in range(runner.n_vocab))
    with _token_chars_lock:
        _token_chars[runner] = max(longest, 1)
    return max(longest, 1)


def check_prompt_chars(texts: list[str], runner: Runner, param: str = "messages") -> None:
    """Refuse a conversation that cannot fit the context whatever the template adds to it."""
    n_ctx = runner.n_ctx
    longest = longest_token_chars(runner) if n_ctx else None
    if not longest:
        return
    chars = sum(len(t) for t in texts)
    at_least = -(-chars // longest)
    if at_least >= n_ctx:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {n_ctx} tokens. However, your prompt has "
            f"{chars} characters, which is at least {at_least} tokens (no token of this model is "
            f"longer than {longest} characters). Shorten the prompt or start the server with a "
            "larger --ctx.", param=param)


# Prompts longer than this are tokenized in pieces first, so that an absurd one stops early.
TOKENIZE_PIECE = 32 * 1024


_LINE_START = re.compile(r"\n(?=\S)")
SLACK_PER_CUT = 8  # tokens a cut may add where a tokenizer would have merged across it


def _pieces(text: str, size: int) -> list[str]:
    """Pieces of about `size` characters, cut before a line that starts with a non-space (a
    boundary BPE pre-tokenizers keep) or, with no such line near, anywhere."""
    out, start = [], 0
    while len(text) - start > size:
        found = _LINE_START.search(text, start + size - 1, start + 2 * size)
        cut = found.end() if found else start + size
        out.append(text[start:cut])
        start = cut
    out.append(text[start:])
    return out


def bounded_prompt_tokens(runner: Runner, prompt: str, stop: threading.Event | None = None,
                          param: str = "messages") -> list[int]:
    """The prompt's tokens, refusing early a prompt that surely exceeds the context.

    llama.cpp's tokenizer is slow on text with many special tokens (a conversation of 100,000
    messages took minutes), so a long prompt is first counted piece by piece, stopping once the
    count is past the context. Pieces are cut where tokens rarely span (see `_pieces`); allowing
    SLACK_PER_CUT tokens per cut, the count is a lower bound of the whole prompt's.
    """
    n_ctx = runner.n_ctx
    if n_ctx and len(prompt) > TOKENIZE_PIECE:
        counted = 0
        pieces = _pieces(prompt, TOKENIZE_PIECE)
        for i, piece in enumerate(pieces):
            if stop is not None:
                check_stop(stop)
            counted += len(runner.tokenize(piece))
            at_least = counted - SLACK_PER_CUT * i
            if at_least >= n_ctx:
                raise ContextLengthExceeded(
                    f"This model's maximum context length is {n_ctx} tokens. However, your "
                    f"prompt is at least {at_least} tokens (counted up to character "
                    f"{sum(len(p) for p in pieces[:i + 1])} of {len(prompt)}), which leaves no "
                    "room for a reply. Shorten the prompt or start the server with a larger --ctx.",
                    param=param)
    if stop is not None:
        check_stop(stop)
    tokens = runner.prompt_tokens(prompt)
    if not tokens:
        # Decoding nothing aborts llama.cpp (found by the fuzz test: `"prompt": ""` killed the
        # server). Like the hosted APIs, generate from the start-of-text token when there is one.
        bos = runner.bos_text
        tokens = runner.tokenize(bos) if bos else []
        if not tokens:
            raise InvalidRequest("the prompt is empty, and this model has no start-of-text token "
                                 "to begin from; send some text", param=param)
    return tokens


# ---- the preparation pool -----------------------------------------------------------------------
class Cancelled(Exception):
    """The request was abandoned (its client left) while it was being prepared."""


class PreparePool:
    """A bounded pool for per-request CPU work. Work queued behind a full pool waits its turn.

    `run(fn, *args)` passes `fn` a `threading.Event` as its last argument: set when the caller was
    cancelled (its client left), so work made of steps can stop between them; work not yet
    started is dropped. `inline=True` runs small work on the caller's thread (the event loop).
    """

    def __init__(self, threads: int):
        self.executor = ThreadPoolExecutor(max_workers=max(1, threads),
                                           thread_name_prefix="localgw-prepare")

    async def run(self, fn: Callable[..., T], *args, inline: bool = False) -> T:
        stop = threading.Event()
        if inline:
            return fn(*args, stop)
        future = self.executor.submit(fn, *args, stop)
        try:
            return await asyncio.wrap_future(future)
        except BaseException:
            stop.set()
            future.cancel()
            raise

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def check_stop(stop: threading.Event) -> None:
    if stop.is_set():
        raise Cancelled()
