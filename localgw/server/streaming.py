"""Server-Sent Events and disconnect watching: a client that leaves stops the work at once."""

from __future__ import annotations

from typing import AsyncIterator, Awaitable, Callable

import anyio

from localgw.chat.responses import sse
from localgw.errors import LocalgwError


class ClientGone(Exception):
    """The client closed the connection before the response was complete."""


async def _wait_disconnect(receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def run_until_disconnect(receive, work: Callable[[], Awaitable]):
    """Run `work()`; if the client disconnects first, cancel it and raise ClientGone."""
    result, gone, error = None, False, None
    async with anyio.create_task_group() as tg:
        async def watch():
            nonlocal gone
            await _wait_disconnect(receive)
            gone = True
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        try:
            result = await work()
        except Exception as exc:  # noqa: BLE001 - re-raised below as itself: anyio's task group
            error = exc           # would wrap it in an ExceptionGroup (a 500 instead of its status)
        tg.cancel_scope.cancel()
    if gone:
        raise ClientGone()
    if error is not None:
        raise error
    return result


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
                 done: bytes | None = sse("[DONE]")):
        self.chunks, self.on_close, self.headers = chunks, on_close, headers or {}
        self.encode, self.encode_error, self.done = encode, encode_error, done

    async def __call__(self, scope, receive, send):
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"),
                   (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
        headers += [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]
        try:
            async with anyio.create_task_group() as tg:
                async def watch():
                    await _wait_disconnect(receive)
                    tg.cancel_scope.cancel()

                tg.start_soon(watch)
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
                tg.cancel_scope.cancel()
        except OSError:
            pass  # the client went away while we wrote
        finally:
            aclose = getattr(self.chunks, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()
            with anyio.CancelScope(shield=True):
                await self.on_close()
