"""httpx's transport for plain-HTTP upstreams, on asyncio protocols instead of anyio streams.

httpx (through httpcore) reads a response with an anyio cancel scope, a timer and a pause and
resume of the socket per read. A forwarded stream reads once per token, and on a machine where
the upstream decodes on the same cores every microsecond of that is taken from the decode. This
network backend keeps the socket reading into a buffer (paused only when the buffer is large),
arms a timer only when a read has to wait, and sends a request's head and body in one write (they
are flushed when the response is first read: one wake-up of the upstream instead of two).
httpx and httpcore still do everything else: pooling, HTTP/1.1, timeouts, errors.
TLS upstreams keep httpcore's own backend.
"""

from __future__ import annotations

import asyncio
import socket

import httpcore
import httpx

HIGH_WATER = 256 * 1024  # bytes buffered before the socket stops reading
FLUSH_AT = 64 * 1024     # a larger request body goes out without waiting for the first read


class _Reader(asyncio.Protocol):
    """Collects what the socket receives; wakes the one read waiting for it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.ended = False
        self.error: Exception | None = None
        self.paused = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended, self.error = True, exc
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


def _time_out(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(httpcore.ReadTimeout("no data within the read timeout"))


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, reader: _Reader):
        self.transport, self.reader = transport, reader
        self.unsent: list[bytes] = []
        self.unsent_bytes = 0

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self.unsent:
            self._flush()
        reader = self.reader
        if not reader.buffer and not reader.ended:
            loop = asyncio.get_running_loop()
            reader.waiter = waiter = loop.create_future()
            timer = loop.call_later(timeout, _time_out, waiter) if timeout is not None else None
            try:
                await waiter
            finally:
                reader.waiter = None
                if timer is not None:
                    timer.cancel()
        buffer = reader.buffer
        if not buffer:
            if reader.error is not None:
                raise httpcore.ReadError(str(reader.error) or type(reader.error).__name__)
            return b""  # the upstream closed the connection
        if len(buffer) <= max_bytes:
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:max_bytes])
            del buffer[:max_bytes]
        if reader.paused and len(buffer) < HIGH_WATER // 2:
            reader.paused = False
            self.transport.resume_reading()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self.unsent.append(buffer)
            self.unsent_bytes += len(buffer)
            if self.unsent_bytes >= FLUSH_AT:
                self._flush()

    def _flush(self) -> None:
        data = b"".join(self.unsent)
        self.unsent.clear()
        self.unsent_bytes = 0
        if self.transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self.transport.write(data)  # asyncio buffers what the socket does not take at once

    async def aclose(self) -> None:
        self.unsent.clear()
        self.transport.abort()

    def get_extra_info(self, info: str):
        if info == "is_readable":  # asked of an idle pooled connection: has the upstream closed it?
            return self.reader.ended or bool(self.reader.buffer)
        if info in ("socket", "client_addr", "server_addr"):
            sock = self.transport.get_extra_info("socket")
            if info == "socket" or sock is None:
                return sock
            return sock.getsockname() if info == "client_addr" else sock.getpeername()
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options=None) -> AsyncioStream:
        loop = asyncio.get_running_loop()
        try:
            transport, reader = await asyncio.wait_for(loop.create_connection(
                _Reader, host, port, local_addr=(local_address, 0) if local_address else None),
                timeout)
        except (TimeoutError, asyncio.TimeoutError):
            raise httpcore.ConnectTimeout(f"no connection within {timeout}s") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from None
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(transport, reader)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def upstream_transport(url: str, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """The transport for an upstream at `url`: asyncio-backed for http://, httpx's own for https://."""
    transport = httpx.AsyncHTTPTransport(limits=limits)
    if url.startswith("http://"):
        # httpx takes no network backend, so its pool is rebuilt with ours and the same limits
        transport._pool = httpcore.AsyncConnectionPool(
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, network_backend=AsyncioBackend())
    return transport
