"""Forwarding to upstreams: the first one that takes a request, and its answer read as it comes.

Nothing is buffered: a stream is read as bytes arrive and each SSE event is handed on the moment
its blank line comes in. The first event of a stream is awaited before the client gets any byte,
so a failure up to then is still an HTTP status (502) and not a broken stream. Closing an exchange
closes its connection, so the upstream sees the client leave at once (vLLM and localgw abort the
generation). The connections and the faults' names are `upstreams/client.py`'s.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, AsyncIterator, Callable

import anyio
import httpx

from localgw.errors import QueueFull, UpstreamBroken, UpstreamError, UpstreamRejected, UpstreamUnreachable
from localgw.upstreams.client import Recorder, UpstreamClient

if TYPE_CHECKING:
    from localgw.upstreams.registry import Target, Upstream

DRAIN_TIMEOUT = 1.0      # seconds to wait for a stream's end after its [DONE]


def _body_pieces(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as it arrives. Forwarded requests ask for `identity`, so the transport's own
    stream is the body (without httpx's decoding and chunking layers, per read); an upstream
    that compresses anyway is decoded by httpx."""
    if response.headers.get("content-encoding", "identity").strip().lower() == "identity":
        return response.stream.__aiter__()
    return response.aiter_bytes()


class Exchange:
    """One forwarded request, from the upstream's status line until `close()` (safe twice)."""

    def __init__(self, target: Target, response: httpx.Response, started: float, sent: int,
                 recorder: Recorder | None):
        self.target, self.response, self.started = target, response, started
        self.sent, self.received = sent, 0
        self.recorder = recorder
        self._first: list[tuple[bytes, dict | None]] | None = None
        self._batches: AsyncIterator[list[tuple[bytes, dict | None]]] | None = None
        self._pieces: AsyncIterator[bytes] | None = None
        self._done = False  # the upstream said [DONE]: what follows is the body's end, to drain
        self._closed = False

    @property
    def upstream(self) -> Upstream:
        return self.target.upstream

    async def read(self) -> bytes:
        """The whole (non-streamed) body, as received."""
        try:
            body = await self.response.aread()
        except httpx.HTTPError as exc:
            raise self._broken(self.upstream.client.broken(exc)) from None
        self.received = len(body)
        return body

    async def first_event(self, decode: bool = True) -> None:
        """Wait for the stream's first event, so a failure before it is still a plain 502.

        `decode=False` checks each event's shape without parsing its JSON (for passing on).
        """
        if "text/event-stream" not in self.response.headers.get("content-type", ""):
            raise self._broken(UpstreamBroken(self.upstream.client.fault(
                f"answered a stream request with {self.response.headers.get('content-type')!r}, "
                "not text/event-stream")))
        self._batches = self._read_batches(decode)
        try:
            self._first = await self._batches.__anext__()
        except StopAsyncIteration:  # [DONE] at once: an empty stream, passed on as one
            self._first = None

    # events() and raw() read the batches themselves: each layer of async generators costs
    # every chunk of every forwarded stream a few microseconds more.
    async def events(self) -> AsyncIterator[dict]:
        """The decoded JSON of each event, one by one, until the upstream's [DONE]."""
        if self._first is not None:
            first, self._first = self._first, None
            for _, data in first:
                if data is not None:
                    yield data
        async for batch in self._batches:
            for _, data in batch:
                if data is not None:
                    yield data

    async def raw(self) -> AsyncIterator[bytes]:
        """The bytes of each read's complete events (until [DONE], not included): one write
        downstream per read upstream."""
        if self._first is not None:
            first, self._first = self._first, None
            yield first[0][0] if len(first) == 1 else b"".join(raw for raw, _ in first)
        async for batch in self._batches:
            yield batch[0][0] if len(batch) == 1 else b"".join(raw for raw, _ in batch)

    async def _read_batches(self, decode: bool) -> AsyncIterator[list[tuple[bytes, dict | None]]]:
        client = self.upstream.client
        buffer = b""
        self._pieces = _body_pieces(self.response)
        try:
            async for piece in self._pieces:
                self.received += len(piece)
                buffer += piece
                if b"\r" in buffer:
                    buffer = buffer.replace(b"\r\n", b"\n")
                batch, fault = [], None
                while (end := buffer.find(b"\n\n")) >= 0:
                    raw, buffer = buffer[:end + 2], buffer[end + 2:]
                    try:
                        data = parse_event(raw, client, decode)
                    except UpstreamBroken as exc:
                        fault = exc
                        break
                    if data == "[DONE]":
                        self._done = True
                        break
                    batch.append((raw, data))
                if batch:
                    yield batch  # what came before a fault is passed on first
                if fault is not None:
                    raise fault
                if self._done:
                    return
        except httpx.HTTPError as exc:
            raise self._broken(client.broken(exc)) from None
        except UpstreamBroken as exc:
            raise self._broken(exc) from None
        what = "the stream ended without [DONE]" if not buffer.strip() else \
            f"the stream ended inside an event ({buffer[:80]!r})"
        raise self._broken(UpstreamBroken(client.fault(what)))

    def _broken(self, exc: UpstreamError) -> UpstreamError:
        self.upstream.record_fault(exc, self.recorder, "broken")
        return exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._batches is not None:
                await self._batches.aclose()
            if self._done:
                await self._drain()
            await self.response.aclose()  # unread: the connection is dropped, the upstream stops
        finally:
            self.upstream.give_back()
            if self.recorder is not None:
                self.recorder.finished(self.upstream.config.name,
                                       time.perf_counter() - self.started, self.sent,
                                       self.received)


    async def _drain(self) -> None:
        """Read the body's end after [DONE], so the connection goes back to the pool."""
        try:
            with anyio.fail_after(DRAIN_TIMEOUT):
                async for _ in self._pieces:
                    pass
        except (TimeoutError, httpx.HTTPError):
            pass  # then the connection is dropped instead


_FIELDS = (b"event:", b"id:", b"retry:", b":")


def parse_event(raw: bytes, client: UpstreamClient, decode: bool = True) -> dict | str | None:
    """An SSE event's data: a dict (None if not `decode`d), "[DONE]", or None for a comment.

    Undecoded, a data payload is still checked to look like one JSON object (braces at both
    ends): enough to tell garbage from an engine's events without parsing each one.
    """
    data = []
    for line in raw.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
        elif line and not line.startswith(_FIELDS):
            raise UpstreamBroken(client.fault(f"sent something that is not SSE: {line[:80]!r}"))
    if not data:
        return None
    payload = b"\n".join(data).strip()
    if payload == b"[DONE]":
        return "[DONE]"
    if not decode and payload[:1] == b"{" and payload[-1:] == b"}":
        return None
    try:
        parsed = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if not isinstance(parsed, dict):
        raise UpstreamBroken(client.fault(f"sent an event that is not a JSON object: {payload[:80]!r}"))
    return parsed


def _unsent(upstream: Upstream, recorder: Recorder | None, started: float, sent: int) -> None:
    """A request that never became an exchange: its slot and its numbers."""
    upstream.give_back()
    if recorder is not None:
        recorder.finished(upstream.config.name, time.perf_counter() - started, sent, 0)


async def open_first(targets: list[Target], path: str, body_for: Callable[[str], bytes], *,
                     stream: bool, request_id: str | None, recorder: Recorder | None = None,
                     decode: bool = True, wait_first: bool = True) -> Exchange:
    """Send to the first upstream that takes it: a full one or an unreachable one is skipped.

    A stream is returned once its first event is in (`wait_first`), or once the upstream's
    status says it is one; then the caller awaits `first_event()` itself."""
    faults: list[Exception] = []
    for target in targets:
        upstream = target.upstream
        try:
            upstream.take()
        except QueueFull as exc:
            if recorder is not None:
                recorder.failed(upstream.config.name, "full")
            faults.append(exc)
            continue
        body = body_for(target.model_id)
        started = time.perf_counter()
        exchange = None
        try:
            response = await upstream.client.open(path, body, stream=stream, request_id=request_id)
            if recorder is not None:
                recorder.answered(upstream.config.name, response.status_code,
                                  time.perf_counter() - started)
            if response.status_code >= 400:
                raise await upstream.client.refuse(response)
            exchange = Exchange(target, response, started, len(body), recorder)
            if stream and wait_first:
                await exchange.first_event(decode)
            upstream.record_success()
            return exchange
        except UpstreamUnreachable as exc:
            upstream.record_fault(exc, recorder, "unreachable")
            faults.append(exc)
            _unsent(upstream, recorder, started, len(body))
        except UpstreamRejected as exc:
            upstream.record_fault(exc, recorder, "rejected")
            _unsent(upstream, recorder, started, len(body))
            raise
        except BaseException:
            if exchange is not None:
                await exchange.close()
            else:
                _unsent(upstream, recorder, started, len(body))
            raise
    if all(isinstance(f, QueueFull) for f in faults):
        raise faults[0]
    unreachable = [f for f in faults if isinstance(f, UpstreamUnreachable)]
    raise unreachable[0] if len(unreachable) == 1 else UpstreamUnreachable(
        "; ".join(f.message for f in unreachable))
