"""uvicorn's HTTP/1.1 protocol (httptools), with a response's head sent together with its body.

uvicorn writes a response's head the moment the app sends `http.response.start`, and its body
with the next message: two writes, usually in the same turn of the loop. On loopback (a client
on the same machine, the common case here) each write to a waiting peer wakes it, and the kernel
tends to run the woken process on the writer's core: the server is preempted between the head
and the body, which puts a context switch on the time to first token (most visibly on a
forwarded stream, whose head and first event are sent back to back; figures in
docs/benchmarks.md). A JSON response's head and body go out together the same way.

So the connection's transport is wrapped: the first write of each request's response (its head)
is held, and goes out joined with the next write, or at the end of the loop's turn if nothing
follows in it (a stream whose first chunk is still being computed). Every other write goes
straight through: a streamed chunk costs no extra turn of the loop. Closing sees the held bytes
first; aborting drops them with the connection.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadWithBody:
    """A transport that holds the write after `hold_next()` until the next write or the end of
    the loop's turn; the rest is the transport's."""

    __slots__ = ("_transport", "_loop", "_hold", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._hold = False
        self._held: bytes | None = None

    def hold_next(self) -> None:
        self._hold = True

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._held is not None:
            data, self._held = self._held + data, None
        elif self._hold:
            self._hold = False
            self._held = data
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def writelines(self, lines) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class HeadWithBodyProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through `HeadWithBody` (pass as Config(http=))."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = HeadWithBody(transport, self.loop)  # type: ignore[assignment]

    def on_headers_complete(self) -> None:
        self.transport.hold_next()  # the next write is this request's response head
        super().on_headers_complete()
