"""Server-Sent Events and disconnect watching: a client that leaves stops the work at once.

The work and a watcher of the client's `receive` run as two asyncio tasks, and whichever ends
first decides. They are plain tasks, not an anyio task group: cancelling a task group's scope
costs every request time before its first token, twice for a forwarded stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Awaitable, Callable

from localgw.chat.responses import sse
from localgw.errors import LocalgwError
from localgw.server.errors import error_response


class ClientGone(Exception):
    """The client closed the connection before the response was complete."""


async def _wait_disconnect(receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _first_of(main: asyncio.Task, receive) -> bool:
    """Wait for `main` or the client's disconnect, whichever comes first; True if the client
    left first (then `main` is cancelled and has finished). Cancelled ourselves (the server
    shuts down), `main` is cancelled too."""
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        await asyncio.wait((main, watcher), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        main.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait((main,))  # ended before anyone closes what it iterates
        raise
    finally:
        watcher.cancel()
    if main.done():
        return False
    main.cancel()
    await asyncio.wait((main,))
    if not main.cancelled():
        main.exception()  # retrieved: it is of no use to anyone now
    return True


async def run_until_disconnect(receive, work: Callable[[], Awaitable]):
    """Run `work()`; if the client disconnects first, cancel it and raise ClientGone. Its own
    exception is raised as itself."""
    task = asyncio.ensure_future(work())
    if await _first_of(task, receive):
        raise ClientGone()
    return task.result()


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
            await _first_of(pump, receive)
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
