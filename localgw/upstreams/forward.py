"""The one place that talks to upstreams: one pooled httpx transport each, every fault named.

Each upstream gets httpx's own transport (httpcore's pool of kept-alive HTTP/1.1 connections), for
http:// and https:// alike; docs/benchmarks.md has what a transport of localgw's own would save.
The model list is read through an httpx.AsyncClient over that transport; forwarded requests go
to the transport itself (see UpstreamClient). Nothing is buffered: a stream is read as bytes
arrive and each SSE event is handed on the moment its blank line comes in. The first event of a
stream is awaited before the client gets any byte, so a failure up to then is still an HTTP status
(502) and not a broken stream. Faults become `UpstreamUnreachable` (before the upstream answered:
the next upstream may be tried), `UpstreamRejected` (it answered with an error status) or
`UpstreamBroken` (it stopped mid-answer or spoke something that is not SSE/JSON). Closing an
exchange closes its connection, so the upstream sees the client leave at once (vLLM and localgw
abort the generation).
"""

from __future__ import annotations

import http.cookiejar
import json
import logging
import os
import time
from typing import TYPE_CHECKING, AsyncIterator, Callable, Protocol

import anyio
import httpx

from localgw import __version__
from localgw.errors import QueueFull, UpstreamBroken, UpstreamError, UpstreamRejected, UpstreamUnreachable
from localgw.upstreams.config import UpstreamConfig

if TYPE_CHECKING:
    from localgw.upstreams.registry import Target, Upstream

# httpx logs every request at INFO; the lines carry URLs only, but they are noise in serve's log.
logging.getLogger("httpx").setLevel(logging.WARNING)

CONNECT_TIMEOUT = 10.0   # seconds, at most: a refused or unroutable host fails over quickly
LIST_TIMEOUT = 10.0      # seconds, at most, for /v1/models
MAX_ERROR_BODY = 64 * 1024
DRAIN_TIMEOUT = 1.0      # seconds to wait for a stream's end after its [DONE]


class Recorder(Protocol):
    """Where per-upstream metrics go (server.metrics.UpstreamMetrics); `None` records nothing."""

    def watch(self, name: str, in_flight: Callable[[], int]) -> None: ...
    def answered(self, name: str, status: int, seconds: float) -> None: ...
    def failed(self, name: str, kind: str) -> None: ...
    def finished(self, name: str, seconds: float, sent: int, received: int) -> None: ...


class _NoCookies(http.cookiejar.CookieJar):
    """A jar that keeps nothing: one client serves every user of the gateway, so a cookie an
    upstream sets for one request (a session, a sticky load balancer) must not ride along on
    the next user's. Not parsing them also saves httpx's per-response cookie extraction."""

    def extract_cookies(self, response, request) -> None:
        pass

    def set_cookie(self, cookie) -> None:
        pass


class UpstreamClient:
    """The pooled HTTP client of one upstream; its key (if any) goes to this upstream only."""

    def __init__(self, config: UpstreamConfig):
        self.config = config
        key = os.environ.get(config.api_key_env, "") if config.api_key_env else ""
        self.has_key = bool(key)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        del key  # held by this client's headers only: never logged, never stored
        timeout = httpx.Timeout(config.timeout, connect=min(CONNECT_TIMEOUT, config.timeout),
                                pool=None)
        # one connection more than requests may run: the model-list refresh never waits
        self.transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(
            max_connections=config.max_concurrency and config.max_concurrency + 1,
            max_keepalive_connections=config.max_concurrency or 32))
        self.http = httpx.AsyncClient(
            base_url=config.url + "/", headers=headers, follow_redirects=False,
            cookies=_NoCookies(), timeout=timeout, transport=self.transport)
        # Forwarded requests go to the transport itself: httpx's client layer (URL merging,
        # auth, redirects, cookies, hooks) costs CPU on each request's time to first token
        # (figure in docs/benchmarks.md) and does nothing for them:
        # no redirects are followed, no cookies kept, and with a transport given the client
        # mounts no proxies either.
        self._headers = [("User-Agent", f"localgw/{__version__}"), *headers.items()]
        self._timeout = timeout.as_dict()
        self._urls: dict[str, httpx.URL] = {}

    def fault(self, what: str) -> str:
        return f"upstream {self.config.name} ({self.config.shown_url}): {what}"

    def unreachable(self, exc: httpx.HTTPError) -> UpstreamUnreachable:
        c = self.config
        if isinstance(exc, httpx.ConnectTimeout):
            what = f"could not connect within {min(CONNECT_TIMEOUT, c.timeout):g}s"
        elif isinstance(exc, httpx.TimeoutException):
            what = f"no answer within {c.timeout:g}s (its timeout)"
        elif isinstance(exc, httpx.ConnectError):
            what = f"cannot connect ({exc or type(exc).__name__})"
        elif isinstance(exc, httpx.RemoteProtocolError):
            what = f"closed the connection without answering ({exc})"
        else:
            what = f"{type(exc).__name__}: {exc}"
        return UpstreamUnreachable(self.fault(what))

    def broken(self, exc: httpx.HTTPError) -> UpstreamBroken:
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamBroken(self.fault(f"no data for {self.config.timeout:g}s mid-answer "
                                             "(its timeout)"))
        return UpstreamBroken(self.fault(f"the connection broke mid-answer ({exc or type(exc).__name__})"))

    def rejected(self, status: int, body: bytes, retry_after: str | None) -> UpstreamRejected:
        """An error status: the client's own fault (4xx) keeps its status and message."""
        message, type_, code, param = error_fields(body)
        if 400 <= status < 500 and status not in (401, 403, 407):
            headers = {"Retry-After": retry_after} if status == 429 and retry_after else None
            return UpstreamRejected(message, status=status, param=param, headers=headers,
                                    type=type_ or "invalid_request_error", code=code)
        hint = (" (is the key in api_key_env right?)" if self.has_key else
                " (it wants a key: set api_key_env in upstreams.toml)") if status in (401, 403) else ""
        return UpstreamRejected(self.fault(f"HTTP {status}: {message}{hint}"))

    async def list_models(self) -> list[dict]:
        """The upstream's /v1/models `data`."""
        try:
            response = await self.http.get("models", timeout=min(LIST_TIMEOUT, self.config.timeout))
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from None
        if response.status_code >= 400:
            raise self.rejected(response.status_code, response.content[:MAX_ERROR_BODY], None)
        try:
            data = response.json()["data"]
            if not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise UpstreamBroken(self.fault("/v1/models is not an OpenAI model list")) from None
        return data

    async def open(self, path: str, body: bytes, *, stream: bool,
                   request_id: str | None) -> httpx.Response:
        """POST and wait for the status line (the body is left to read)."""
        # identity: a compressed stream would be held back by the compressor, not passed on
        headers = [*self._headers, ("Content-Type", "application/json"),
                   ("Accept-Encoding", "identity"),
                   ("Accept", "text/event-stream" if stream else "application/json")]
        if request_id:
            headers.append(("X-Request-ID", request_id))
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self.config.url + "/" + path)
        request = httpx.Request("POST", url, content=body, headers=headers,
                                extensions={"timeout": self._timeout})
        try:
            return await self.transport.handle_async_request(request)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from None

    async def refuse(self, response: httpx.Response) -> UpstreamRejected:
        """The error an error status stands for, its message read from the body."""
        try:
            error_body = await _read_some(response, MAX_ERROR_BODY)
        except httpx.HTTPError:
            error_body = b""
        finally:
            await response.aclose()
        return self.rejected(response.status_code, error_body, response.headers.get("retry-after"))


async def _read_some(response: httpx.Response, limit: int) -> bytes:
    out = b""
    async for piece in response.aiter_bytes():
        out += piece
        if len(out) >= limit:
            break
    return out[:limit]


def _body_pieces(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as it arrives. Forwarded requests ask for `identity`, so the transport's own
    stream is the body (without httpx's decoding and chunking layers, per read); an upstream
    that compresses anyway is decoded by httpx."""
    if response.headers.get("content-encoding", "identity").strip().lower() == "identity":
        return response.stream.__aiter__()
    return response.aiter_bytes()


def error_fields(body: bytes) -> tuple[str, str | None, str | None, str | None]:
    """message, type, code, param of an error body in any of the shapes engines use."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        text = body.decode("utf-8", "replace").strip()
        return (text[:500] or "(empty body)"), None, None, None
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, str):
        return err, None, None, None
    if not isinstance(err, dict):
        return json.dumps(data)[:500], None, None, None
    message = err.get("message") or err.get("detail") or json.dumps(data)[:500]
    code = err.get("code")
    return (str(message), _str(err.get("type")), None if code is None else str(code),
            _str(err.get("param")))


def _str(value) -> str | None:
    return value if isinstance(value, str) else None


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
