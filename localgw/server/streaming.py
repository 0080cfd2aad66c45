"""Server-Sent Events, and disconnect watching: a client that leaves stops the work at once
(the race itself is `cancel.first_of`)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Awaitable, Callable

from localgw.chat.responses import sse
from localgw.errors import LocalgwError
from localgw.server.cancel import Disconnect, first_of, run_until_cancelled
from localgw.server.errors import error_response


async def run_until_disconnect(receive, work: Callable[[], Awaitable]):
    """Run `work()`; if the client disconnects first, cancel it and raise ClientGone. Its own
    exception is raised as itself."""
    return await run_until_cancelled(Disconnect(receive), work)


def named_event(event: tuple[str, dict]) -> bytes:
    """An `event: NAME` frame, as the Anthropic and Responses streams send them."""
    name, data = event
    return f"event: {name}\n".encode() + sse(data)


class EventStreamResponse:
    """An ASGI response streaming SSE frames; a client that leaves stops the work.

    By default (chat and text completions) items are `data:` frames and the stream ends with
    `[DONE]`, even after an error. Other wire formats pass their own `encode`/`encode_error`
    (e.g. `named_event`) and `done=None`: their streams end with their own last event.
    """

    def __init__(self, chunks: AsyncIterator, on_close: Callable[[], Awaitable[None]],
                 headers: dict[str, str] | None = None, *,
                 encode: Callable[[object], bytes] = sse,
                 encode_error: Callable[[LocalgwError], bytes] = lambda exc: sse(exc.to_dict()),
                 done: bytes | None = sse("[DONE]"),
                 first: Callable[[], Awaitable[None]] | None = None):
        """`first`, if given, is awaited before the head is sent: a LocalgwError it raises is
        answered as that error (its status, a JSON body) instead of a stream. A forwarded stream
        waits there for the upstream's first event, with the response already under way, so
        that event goes out with the head the moment it arrives."""
        self.chunks, self.on_close, self.headers = chunks, on_close, headers or {}
        self.encode, self.encode_error, self.done = encode, encode_error, done
        self.first = first

    async def __call__(self, scope, receive, send):
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"),
                   (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
        headers += [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]
        pump = asyncio.ensure_future(self._pump(scope, receive, send, headers))
        try:
            await first_of(pump, Disconnect(receive))
            if not pump.cancelled():
                pump.result()  # its own error, if it had one
        finally:
            await asyncio.shield(self._close())

    async def _pump(self, scope, receive, send, headers) -> None:
        if self.first is not None:
            try:
                await self.first()
            except LocalgwError as exc:
                await error_response(exc, scope.get("path", ""))(scope, receive, send)
                return
        with contextlib.suppress(OSError):  # the client went away while we wrote
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            try:
                async for chunk in self.chunks:
                    await send({"type": "http.response.body", "body": self.encode(chunk),
                                "more_body": True})
            except LocalgwError as exc:
                await send({"type": "http.response.body", "body": self.encode_error(exc),
                            "more_body": True})
            await send({"type": "http.response.body", "body": self.done or b"",
                        "more_body": False})

    async def _close(self) -> None:
        try:
            aclose = getattr(self.chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            await self.on_close()
