"""httpx's transport for plain-HTTP upstreams: HTTP/1.1 on asyncio protocols, parsed by httptools.

A forwarded stream costs the gateway a request's head out and a response's head and one read per
token in. Through httpcore that is a large share of the gateway's CPU on the time to first
token (an anyio lock, event and cancel scope per step of its pool, h11's pure-Python parsing;
figures in docs/benchmarks.md). This transport keeps httpx's interface
(httpx.Request in, httpx.Response with a streamed body out, httpx's exceptions) and does the rest
itself:

- A pool of kept-alive connections per (host, port), newest first, each an `asyncio.Protocol`
  that feeds what the socket receives to `httptools.HttpResponseParser` (llhttp, the C parser
  uvicorn uses for requests). Response heads and bodies arrive through its callbacks; a body is
  buffered until read, and the socket stops reading while more than HIGH_WATER bytes wait.
- A request goes out in one write (head and body), so the upstream wakes once.
- A read arms a timer only when it has to wait (`timeout["read"]`); connecting honours
  `timeout["connect"]`. `max_connections` waits for a free connection (no pool timeout: the
  gateway bounds requests per upstream before they get here).
- A connection goes back to the pool only when its response was read to the end and both sides
  keep it alive; a response closed early (the client left) aborts the connection, so the
  upstream sees it at once. An idle connection the upstream closed, or that outlived
  `keepalive_expiry`, is dropped when next taken. If a reused connection closes before any byte
  of the answer (the upstream's idle timeout raced us), the request is sent once more on a new
  connection, as httpcore does.

TLS upstreams keep httpx's own transport (httpcore over TLS): a hosted endpoint is far enough
away that these microseconds do not show, and certificate handling is best left to httpx.
"""

from __future__ import annotations

import asyncio
import socket
import time

import httptools
import httpx

HIGH_WATER = 256 * 1024  # bytes buffered before the socket stops reading


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection and the response now arriving on it (at most one)."""

    def __init__(self, key: tuple[str, int]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False          # the socket is gone (or going)
        self.reused = False
        self.idle_since = 0.0
        self.active = False          # a request was sent and its response is not done
        self.complete = False
        self.waiter: asyncio.Future | None = None

    def begin(self) -> None:
        """A request is about to be sent: a fresh parser and response state."""
        self.active = True
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.has_length = False      # content-length or chunked: the body's end is in the data
        self.head_done = False
        self.body = bytearray()
        self.complete = False        # the whole response was parsed
        self.keep_alive = False      # ... and both sides keep the connection open after it
        self.received = False        # any byte of the response arrived
        self.error: httpx.HTTPError | None = None
        self.waiter: asyncio.Future | None = None
        self.paused = False

    # asyncio.Protocol

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.active or self.complete:
            # bytes nobody asked for (on an idle connection, or after a whole response): the
            # connection cannot be trusted now; a response already read is kept
            self.closed = True
            self.transport.abort()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:  # (or on_message_begin's refusal, below)
            if not self.complete:
                self._fail(httpx.RemoteProtocolError(f"the upstream's answer is not HTTP/1.1 ({exc})"))
            self.closed = True
            self.transport.abort()
            self._wake()
            return
        if len(self.body) > HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.active and not self.complete and self.error is None:
            if not self.head_done:
                self._fail(httpx.RemoteProtocolError(
                    "the upstream closed the connection without sending a response"))
            elif self.has_length:
                self._fail(httpx.RemoteProtocolError(
                    "the upstream closed the connection before the end of the body"
                    + (f" ({exc})" if exc else "")))
            else:  # a body delimited by the connection's end: this is its end
                self.complete = True
        self._wake()

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:  # a second answer to one request: stop parsing, drop the connection
            raise _Unsolicited()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
            self.has_length = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if 100 <= self.status < 200 and self.status != 101:  # an interim answer: the real one follows
            self.headers.clear()
            self.has_length = False
            return
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()  # the parser forgets it after this

    # used by the transport and the body stream

    def _fail(self, error: httpx.HTTPError) -> None:
        if self.error is None:
            self.error = error

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait(self, timeout: float | None, what: str) -> None:
        """Until something arrives (or the connection ends); httpx.ReadTimeout after `timeout`."""
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, _time_out, waiter, what) if timeout is not None else None
        try:
            await waiter
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()

    def take_body(self) -> bytes:
        data = bytes(self.body)
        self.body.clear()
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        return data

    def reusable(self, now: float, expiry: float | None) -> bool:
        return not self.closed and (expiry is None or now - self.idle_since < expiry)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _Unsolicited(Exception):
    """Raised from a parser callback (httptools turns it into HttpParserCallbackError)."""


def _time_out(waiter: asyncio.Future, what: str) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.ReadTimeout(what))


class _Body(httpx.AsyncByteStream):
    """A response's body as it arrives; closing it early drops the connection."""

    def __init__(self, transport: PlainHTTPTransport, conn: _Connection, timeout: float | None):
        self.transport, self.conn, self.timeout = transport, conn, timeout
        self.late = f"no data from the upstream within {timeout}s"
        self.done = False

    async def __aiter__(self):
        conn = self.conn
        while True:
            if conn.body:
                yield conn.take_body()
                continue
            if conn.error is not None:
                raise conn.error
            if conn.complete:
                return
            await conn.wait(self.timeout, self.late)

    async def aclose(self) -> None:
        if not self.done:
            self.done = True
            self.transport._finished(self.conn)


class PlainHTTPTransport(httpx.AsyncBaseTransport):
    """Kept-alive HTTP/1.1 connections to plain-HTTP hosts (see the module's docstring)."""

    def __init__(self, limits: httpx.Limits = httpx.Limits()):
        self.max_connections = limits.max_connections
        self.max_idle = limits.max_keepalive_connections
        self.expiry = limits.keepalive_expiry
        self.idle: dict[tuple[str, int], list[_Connection]] = {}
        self.count = 0                              # connections open or opening
        self.waiting: list[asyncio.Future] = []     # requests waiting for max_connections
        self.closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"this transport speaks plain HTTP, not {url.scheme}")
        timeouts = request.extensions.get("timeout", {})
        key = (url.host, url.port or 80)
        body = await request.aread()
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), url.raw_path)]
        head += [b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw]
        head.append(b"\r\n")
        data = b"".join(head) + body
        read = timeouts.get("read")
        late = f"no answer from the upstream within {read}s"
        for attempt in (0, 1):
            conn = await self._connection(key, timeouts.get("connect"))
            conn.begin()
            conn.transport.write(data)
            try:
                while not conn.head_done:
                    if conn.error is not None:
                        raise conn.error
                    await conn.wait(read, late)
            except httpx.RemoteProtocolError:
                self._finished(conn)
                if attempt == 0 and conn.reused and not conn.received:
                    continue  # the upstream closed the idle connection as we sent on it
                raise
            except BaseException:
                self._finished(conn)
                raise
            return httpx.Response(
                conn.status, headers=conn.headers,
                stream=_Body(self, conn, read), request=request,
                extensions={"http_version": b"HTTP/1.1"})
        raise AssertionError("unreachable")

    async def _connection(self, key: tuple[str, int], timeout: float | None) -> _Connection:
        """An idle kept-alive connection to `key`, or a new one (waiting for max_connections)."""
        while True:
            if self.closed:
                raise httpx.ConnectError("the upstream's client is closed")
            idle = self.idle.get(key)
            now = time.monotonic()
            while idle:
                conn = idle.pop()
                if conn.reusable(now, self.expiry):
                    conn.reused = True
                    return conn
                self._drop(conn)
            if self.max_connections is None or self.count < self.max_connections:
                break
            # full: wait for a connection to come back or go, or drop another host's idle one
            other = next((c for conns in self.idle.values() for c in conns), None)
            if other is not None:
                self.idle[other.key].remove(other)
                self._drop(other)
                continue
            waiter = asyncio.get_running_loop().create_future()
            self.waiting.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self.waiting:
                    self.waiting.remove(waiter)
        self.count += 1
        try:
            return await self._connect(key, timeout)
        except BaseException:
            self.count -= 1
            self._wake_one()
            raise

    async def _connect(self, key: tuple[str, int], timeout: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            transport, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(key), *key), timeout)
        except (TimeoutError, asyncio.TimeoutError):
            raise httpx.ConnectTimeout(f"no connection within {timeout}s") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _finished(self, conn: _Connection) -> None:
        """The response on `conn` is over (read or not): keep the connection or drop it."""
        keep = (conn.complete and conn.keep_alive and conn.error is None and not conn.closed
                and not self.closed
                and (self.max_idle is None or len(self.idle.get(conn.key, ())) < self.max_idle))
        conn.active = False
        conn.waiter = None
        if keep:
            conn.idle_since = time.monotonic()
            conn.body.clear()
            self.idle.setdefault(conn.key, []).append(conn)
            self._wake_one()
        else:
            self._drop(conn)

    def _drop(self, conn: _Connection) -> None:
        conn.abort()
        self.count -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        for waiter in self.waiting:
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        self.closed = True
        for conns in self.idle.values():
            for conn in conns:
                self._drop(conn)
        self.idle.clear()


def upstream_transport(url: str, limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """The transport for an upstream at `url`: ours for http://, httpx's own for https://."""
    if url.startswith("http://"):
        return PlainHTTPTransport(limits)
    return httpx.AsyncHTTPTransport(limits=limits)
