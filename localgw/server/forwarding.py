"""Requests for upstream models: the HTTP side of `localgw.upstreams`.

Chat and text completions are forwarded as the client sent them (only `model` rewritten when the
upstream knows the model by another id), streams passed on event by event. Other front doors
(Anthropic, Responses) reach upstream models through `start_upstream_chat`, which streams the
translated ChatRequest from the upstream and yields its chunks, as a local model's ChatCall does.
A client that leaves closes the upstream connection at once.
"""

from __future__ import annotations

import json
import time
from typing import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response

from localgw.chat.requests import ChatRequest
from localgw.chat.responses import Usage, new_id
from localgw.errors import UpstreamBroken
from localgw.server.calls import ChatCall
from localgw.server.streaming import ClientGone, EventStreamResponse, run_until_disconnect
from localgw.upstreams.forward import Exchange, error_fields, open_first
from localgw.upstreams.registry import Listed, Target

CLIENT_CLOSED = 499


async def upstream_targets(request: Request, model_id: str) -> list[Target]:
    """The upstreams a request for `model_id` goes to; [] for a local (or unknown) model."""
    registry = request.app.state.upstreams
    if not registry.upstreams:
        return []
    return await registry.find(model_id, request.app.state.manager.knows)


def upstream_models(request: Request, local_ids: set[str]) -> list[dict]:
    """/v1/models entries of the upstreams' models (after the local ones, which win a clash)."""
    return [listed.model_object() for listed in request.app.state.upstreams.listing(local_ids)]


async def upstream_model(request: Request, model_id: str) -> dict | None:
    """/v1/models/{id} of an upstream model; None when the id is not an upstream's."""
    targets = await upstream_targets(request, model_id)
    return Listed(model_id, targets[0]).model_object() if targets else None


async def _open(request: Request, targets: list[Target], path: str,
                body_for: Callable[[str], bytes], stream: bool, decode: bool = True,
                wait_first: bool = True) -> Exchange:
    """Open the exchange; if the client leaves meanwhile, close whatever was opened."""
    opened: list[Exchange] = []

    async def work() -> Exchange:
        exchange = await open_first(targets, path, body_for, stream=stream,
                                    request_id=request.scope.get("state", {}).get("request_id"),
                                    recorder=request.app.state.metrics.upstreams, decode=decode,
                                    wait_first=wait_first)
        opened.append(exchange)
        return exchange

    try:
        return await run_until_disconnect(request.receive, work)
    except ClientGone:
        for exchange in opened:
            await exchange.close()
        raise


async def forward_if_upstream(request: Request, path: str) -> Response | None:
    """Forward a chat/text completion for an upstream model; None when the model is local.

    Only `model` is read here: validating the body is the upstream's job (it may accept more
    than localgw does). A body that is not a JSON object with a model goes the local way, which
    explains what is wrong with it.
    """
    if not request.app.state.upstreams.upstreams:
        return None
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("application/json", ""):
        return None
    body = await request.body()
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("model"), str):
        return None
    targets = await upstream_targets(request, data["model"])
    if not targets:
        return None

    def body_for(model_id: str) -> bytes:
        return body if model_id == data["model"] else json.dumps(dict(data, model=model_id)).encode()

    stream = data.get("stream") is True
    try:
        # a stream's first event is awaited inside the response (see EventStreamResponse's
        # `first`): when it comes, it goes out with the head at once, without this stack's return
        exchange = await _open(request, targets, path, body_for, stream, decode=False,
                               wait_first=False)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    if stream:
        return EventStreamResponse(exchange.raw(), exchange.close, encode=_as_is,
                                   first=lambda: exchange.first_event(decode=False))
    try:
        content = await run_until_disconnect(request.receive, exchange.read)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    finally:
        await exchange.close()
    upstream = exchange.response
    return Response(content, status_code=upstream.status_code,
                    media_type=upstream.headers.get("content-type", "application/json"))


def _as_is(frames: bytes) -> bytes:
    return frames  # the upstream's own SSE bytes, passed on unchanged


def _upstream_body(req: ChatRequest) -> dict:
    body = req.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True,
                          exclude={"keep_alive"})
    # usage is always asked for: the front doors report it, whether or not the client asked
    return body | {"stream": True, "stream_options": {"include_usage": True}}


async def start_upstream_chat(request: Request, targets: list[Target],
                              req: ChatRequest) -> ChatCall:
    """A ChatRequest streamed from an upstream, as `chat.completion.chunk` dicts."""
    body = _upstream_body(req)
    exchange = await _open(request, targets, "chat/completions",
                           lambda model_id: json.dumps(dict(body, model=model_id)).encode(), True)
    usage = Usage()
    call_id, created = new_id("chatcmpl"), int(time.time())
    want_usage = bool(req.stream and req.stream_options and req.stream_options.include_usage)

    async def chunks() -> AsyncIterator[dict]:
        # A local ChatCall has its usage counted when a choice finishes; the upstream reports it
        # in a last chunk of its own. So finishing chunks wait for it (renderers read the usage
        # as a choice finishes), and a stream that breaks first sends no finish at all.
        finishing, usage_chunk = [], None
        async for chunk in exchange.events():
            if "error" in chunk:
                message = error_fields(json.dumps(chunk).encode())[0]
                raise UpstreamBroken(exchange.upstream.client.fault(message))
            ours = dict(chunk, id=call_id, created=created, model=req.model)
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

    return ChatCall(chunks(), usage, call_id, created, req.model, exchange.close)


def _count(usage: Usage, reported: dict) -> None:
    usage.prompt_tokens = int(reported.get("prompt_tokens") or 0)
    usage.completion_tokens = int(reported.get("completion_tokens") or 0)
    details = reported.get("prompt_tokens_details") or {}
    usage.cached_tokens = int(details.get("cached_tokens") or 0)
