"""The caller's end of a job, and how events reach it from the loop thread.

A `Generation` is made on the caller's event loop (`submit`) and read there; the loop thread
only adds to it, through `call_soon_threadsafe`: `flush` hands a step's events over in one
call per event loop, `send` one event (`abort_all`). An event loop that has gone away marks
its generations cancelled, so the loop frees their slots.
"""

from __future__ import annotations

import asyncio
import threading

from localgw.engine.types import Event


class Generation:
    """The caller's end of a job: async-iterate events; `cancel()` frees the slot."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._events: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()

    def _send(self, event: Event | None) -> None:  # called from another thread
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the event loop is gone: nobody listens any more
            self.cancelled.set()

    def cancel(self) -> None:
        self.cancelled.set()

    def __aiter__(self):
        return self

    async def __anext__(self) -> Event:
        event = await self._events.get()
        if event is None:
            raise StopAsyncIteration
        return event


def _deliver(items: list) -> None:
    for out, event in items:
        out._events.put_nowait(event)


def flush(events: list) -> None:
    """Hand `events` ((Generation, event or None for its end) pairs, in order) to their event
    loops, one call each, and empty the list."""
    by_loop: dict = {}
    for out, event in events:
        by_loop.setdefault(out._loop, []).append((out, event))
    events.clear()
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_deliver, items)
        except RuntimeError:  # that event loop is gone
            for out, _ in items:
                out.cancelled.set()
