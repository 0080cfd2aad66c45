"""Where a request's model lives, a local model or an upstream's, and running it upstream.

`ModelRouter.place` is asked once per request: a local model (or one nobody serves, which the
local path answers with a 404) is `LOCAL`; a model the upstreams list is a `Where` with the
upstreams to try in order (a local model of the same id wins). No HTTP types here: the caller
passes a cancellation signal (`server.cancel`) and its request id, for the upstream's logs.

An upstream runs a ChatRequest through `start_chat`, which streams the request from the
upstream's `chat/completions` (usage always asked for) and yields its chunks as a local model's
ChatCall does. A caller that goes closes the upstream connection at once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

from localgw.chat.requests import ChatRequest
from localgw.chat.responses import Usage, new_id
from localgw.errors import UpstreamBroken
from localgw.server.calls import ChatCall
from localgw.server.cancel import Cancellation, ClientGone, run_until_cancelled
from localgw.upstreams.client import error_fields
from localgw.upstreams.forward import Exchange, open_first
from localgw.upstreams.registry import Listed, Target, UpstreamRegistry


@dataclass(frozen=True)
class Where:
    """The upstreams that serve a request's model, in the order to try them; none: local."""

    targets: list[Target] = field(default_factory=list)

    @property
    def upstream(self) -> bool:
        return bool(self.targets)


LOCAL = Where()


class ModelRouter:
    """Decides local vs upstream, and opens exchanges with the upstreams."""

    def __init__(self, upstreams: UpstreamRegistry, is_local: Callable[[str], bool],
                 recorder=None):
        self.upstreams, self.is_local, self.recorder = upstreams, is_local, recorder

    @property
    def has_upstreams(self) -> bool:
        return bool(self.upstreams.upstreams)

    async def place(self, model_id: str) -> Where:
        if not self.upstreams.upstreams:
            return LOCAL
        return Where(await self.upstreams.find(model_id, self.is_local))

    async def place_body(self, body: bytes) -> tuple[Where, dict] | None:
        """Where a JSON body's model lives, reading only `model`; None when the body is not a
        JSON object with a model (validating it is left to the local path, which explains what
        is wrong, or to the upstream, which may accept more than localgw does)."""
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("model"), str):
            return None
        return await self.place(data["model"]), data

    # ---- listings -----------------------------------------------------------------------------
    def models(self, local_ids: set[str]) -> list[dict]:
        """/v1/models entries of the upstreams' models (after the local ones, which win a clash)."""
        return [listed.model_object() for listed in self.upstreams.listing(local_ids)]

    async def model(self, model_id: str) -> dict | None:
        """/v1/models/{id} of an upstream model; None when the id is not an upstream's."""
        where = await self.place(model_id)
        return Listed(model_id, where.targets[0]).model_object() if where.upstream else None

    # ---- exchanges ----------------------------------------------------------------------------
    async def open(self, where: Where, path: str, body_for: Callable[[str], bytes], *,
                   stream: bool, cancel: Cancellation, request_id: str | None,
                   decode: bool = True, wait_first: bool = True) -> Exchange:
        """Open the exchange; if the caller goes meanwhile, close whatever was opened."""
        opened: list[Exchange] = []

        async def work() -> Exchange:
            exchange = await open_first(where.targets, path, body_for, stream=stream,
                                        request_id=request_id, recorder=self.recorder,
                                        decode=decode, wait_first=wait_first)
            opened.append(exchange)
            return exchange

        try:
            return await run_until_cancelled(cancel, work)
        except ClientGone:
            for exchange in opened:
                await exchange.close()
            raise

    async def start_chat(self, where: Where, req: ChatRequest, cancel: Cancellation,
                         request_id: str | None = None) -> ChatCall:
        """A ChatRequest streamed from an upstream, as `chat.completion.chunk` dicts."""
        body = _upstream_body(req)
        exchange = await self.open(where, "chat/completions",
                                   lambda model_id: json.dumps(dict(body, model=model_id)).encode(),
                                   stream=True, cancel=cancel, request_id=request_id)
        usage = Usage()
        call_id, created = new_id("chatcmpl"), int(time.time())
        want_usage = bool(req.stream and req.stream_options and req.stream_options.include_usage)
        chunks = _upstream_chunks(exchange, usage, want_usage, id=call_id, created=created,
                                  model=req.model)
        return ChatCall(chunks, usage, call_id, created, req.model, exchange.close)


def _upstream_body(req: ChatRequest) -> dict:
    body = req.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True,
                          exclude={"keep_alive"})
    # usage is always asked for: the front doors report it, whether or not the client asked
    return body | {"stream": True, "stream_options": {"include_usage": True}}


async def _upstream_chunks(exchange: Exchange, usage: Usage, want_usage: bool,
                           **ours_fields) -> AsyncIterator[dict]:
    # A local ChatCall has its usage counted when a choice finishes; the upstream reports it in a
    # last chunk of its own. So finishing chunks wait for it (renderers read the usage as a
    # choice finishes), and a stream that breaks first sends no finish at all.
    finishing, usage_chunk = [], None
    async for chunk in exchange.events():
        if "error" in chunk:
            message = error_fields(json.dumps(chunk).encode())[0]
            raise UpstreamBroken(exchange.upstream.client.fault(message))
        ours = dict(chunk, **ours_fields)
        if isinstance(chunk.get("usage"), dict):
            _count(usage, chunk["usage"])
            usage_chunk = ours
        choices = chunk.get("choices")
        if choices and any(c.get("finish_reason") for c in choices):
            finishing.append(ours)
        elif choices:
            yield ours
    for chunk in finishing:
        yield chunk
    if want_usage and usage_chunk is not None and not usage_chunk.get("choices"):
        yield usage_chunk


def _count(usage: Usage, reported: dict) -> None:
    usage.prompt_tokens = int(reported.get("prompt_tokens") or 0)
    usage.completion_tokens = int(reported.get("completion_tokens") or 0)
    details = reported.get("prompt_tokens_details") or {}
    usage.cached_tokens = int(details.get("cached_tokens") or 0)
