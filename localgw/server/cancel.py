"""Cancellation: work that ends at once when its caller is gone.

A caller hands the work a *cancellation signal*: anything with `async wait()` that returns once
the caller has gone (an `asyncio.Event` in tests; `Disconnect` for an HTTP client, which reads
the ASGI `receive` channel until `http.disconnect`). The signal is waited on only while some work
runs, so an HTTP response that later watches `receive` itself sees the disconnect too.

The work and the watcher run as two plain asyncio tasks, and whichever ends first decides; not an
anyio task group, whose cancel scope costs every request time before its first token.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Awaitable, Callable, Protocol, TypeVar

T = TypeVar("T")


class ClientGone(Exception):
    """The client closed the connection before the response was complete."""


class Cancellation(Protocol):
    """A signal that the caller has gone: `wait()` returns then (and never before)."""

    async def wait(self) -> object: ...


class Disconnect:
    """An HTTP client's cancellation signal: its ASGI `receive` says `http.disconnect`."""

    def __init__(self, receive: Callable[[], Awaitable[dict]]):
        self.receive = receive

    async def wait(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return


async def first_of(main: asyncio.Task, cancel: Cancellation) -> bool:
    """Wait for `main` or the cancellation, whichever comes first; True if cancelled first (then
    `main` is cancelled and has finished). Cancelled ourselves (the server shuts down), `main`
    is cancelled too."""
    watcher = asyncio.ensure_future(cancel.wait())
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


async def run_until_cancelled(cancel: Cancellation, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work()`; if the caller goes first, cancel it and raise ClientGone. Its own exception
    is raised as itself."""
    task = asyncio.ensure_future(work())
    if await first_of(task, cancel):
        raise ClientGone()
    return task.result()
