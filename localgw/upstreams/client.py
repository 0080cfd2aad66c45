"""An upstream's pooled HTTP client: one httpx transport each, every fault named.

Each upstream gets httpx's own transport (httpcore's pool of kept-alive HTTP/1.1 connections), for
http:// and https:// alike; docs/benchmarks.md has what a transport of localgw's own would save.
The model list is read through an httpx.AsyncClient over that transport; forwarded requests go
to the transport itself (see UpstreamClient). Faults become `UpstreamUnreachable` (before the
upstream answered: the next upstream may be tried), `UpstreamRejected` (it answered with an error
status) or `UpstreamBroken` (it stopped mid-answer or spoke something that is not SSE/JSON).
`upstreams/forward.py` reads the answers.
"""

from __future__ import annotations

import http.cookiejar
import json
import logging
import os
from typing import Callable, Protocol

import httpx

from localgw import __version__
from localgw.errors import UpstreamBroken, UpstreamRejected, UpstreamUnreachable
from localgw.upstreams.config import UpstreamConfig

# httpx logs every request at INFO; the lines carry URLs only, but they are noise in serve's log.
logging.getLogger("httpx").setLevel(logging.WARNING)

CONNECT_TIMEOUT = 10.0   # seconds, at most: a refused or unroutable host fails over quickly
LIST_TIMEOUT = 10.0      # seconds, at most, for /v1/models
MAX_ERROR_BODY = 64 * 1024


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
