"""OpenAI bodies for upstream models (chat and text completions, embeddings, rerank), forwarded as
the client sent them.

Only `model` is rewritten, when the upstream knows the model by another id (and fields that the
path does not take, such as `stream` for embeddings, are dropped); streams are passed on event
by event. Where the model lives is `server.router.ModelRouter`'s answer, asked once per
request (`place`); other front doors (Anthropic, Responses) reach upstream models through
`ChatService.start`. A client that leaves closes the upstream connection at once.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from localgw.server.cancel import ClientGone, Disconnect
from localgw.server.router import Where
from localgw.server.streaming import EventStreamResponse, run_until_disconnect

CLIENT_CLOSED = 499


async def upstream_answer(request: Request, path: str, drop: tuple[str, ...] = ()
                          ) -> tuple[bytes, Where | None, Response | None]:
    """The request's body, where its model lives, and the upstream's answer when an upstream
    serves it (None when the route runs the request here). A route's one way to an upstream."""
    body = await request.body()
    where, data = await place(request, body)
    if where is None or not where.upstream:
        return body, where, None
    if any(name in data for name in drop):
        data = {k: v for k, v in data.items() if k not in drop}
        body = json.dumps(data).encode()
    return body, where, await forward(request, path, body, where, data)


async def place(request: Request, body: bytes) -> tuple[Where | None, dict | None]:
    """Where a request's model lives, read from its body's `model` alone (the
    body is forwarded unvalidated: the upstream may accept more than localgw does), and the
    body as JSON. (None, None) when there are no upstreams, or the body is not a JSON object
    with a model (the local way explains what is wrong with it)."""
    router = request.app.state.service.router
    if not router.has_upstreams:
        return None, None
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("application/json", ""):
        return None, None
    return await router.place_body(body) or (None, None)


async def forward(request: Request, path: str, body: bytes, where: Where, data: dict) -> Response:
    """Send the body to the first of `where`'s upstreams that takes it; answer as it answers."""
    def body_for(model_id: str) -> bytes:
        return body if model_id == data["model"] else json.dumps(dict(data, model=model_id)).encode()

    stream = data.get("stream") is True
    try:
        # a stream's first event is awaited inside the response (see EventStreamResponse's
        # `first`): when it comes, it goes out with the head at once, without this stack's return
        exchange = await request.app.state.service.router.open(
            where, path, body_for, stream=stream, cancel=Disconnect(request.receive),
            request_id=request.scope.get("state", {}).get("request_id"), decode=False,
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


