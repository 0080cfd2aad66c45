"""Pure ASGI middleware (no BaseHTTPMiddleware: it breaks streaming and disconnects)."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import secrets
import socket
from dataclasses import dataclass

from localgw.errors import (AuthenticationError, Forbidden, LocalgwError, RequestTooLarge,
                            UnsupportedMediaType)
from localgw.server.errors import error_response

log = logging.getLogger("localgw.server")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class RequestIDMiddleware:
    """Every response carries `X-Request-ID`: the client's own when sane, else a new one."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = _header(scope, b"x-request-id")
        request_id = given if given and _SAFE_ID.match(given) else f"req_{secrets.token_hex(12)}"
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + [
                    (b"x-request-id", request_id.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)


class UnexpectedErrorMiddleware:
    """A bug in one request is that request's 500, logged once; it goes no further. (Starlette's
    own last-resort handler re-raises after answering, and uvicorn then drops the connection, so
    the client's next kept-alive request would fail too.) A response already started is ended
    where it stands."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the point: no bug escapes its request
            log.exception("unhandled error on %s %s", scope.get("method"), scope["path"])
            if not started:
                error = LocalgwError(f"internal error: {type(exc).__name__}: {exc}")
                await error_response(error, scope["path"])(scope, receive, send)


class BodyLimitMiddleware:
    """413 for bodies over the limit, by Content-Length or by counting what arrives."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _too_large(self) -> RequestTooLarge:
        return RequestTooLarge(f"the request body is larger than the {self.max_bytes} byte limit "
                               "(serve --max-body changes it)")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = _header(scope, b"content-length")
        if length and length.isdigit() and int(length) > self.max_bytes:
            return await error_response(self._too_large(), scope["path"])(scope, receive, send)
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, counting_receive, send)


class APIKeyMiddleware:
    """Bearer or x-api-key, compared in constant time. `/health` and CORS preflights are public."""

    PUBLIC = {"/health"}

    def __init__(self, app, api_key: str | None):
        self.app = app
        self.key = api_key.encode() if api_key else None

    async def __call__(self, scope, receive, send):
        if (self.key is None or scope["type"] != "http" or scope["path"] in self.PUBLIC
                or scope["method"] == "OPTIONS"):
            return await self.app(scope, receive, send)
        given = _header(scope, b"x-api-key")
        auth = _header(scope, b"authorization")
        if auth and auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if given is None or not hmac.compare_digest(given.encode(), self.key):
            err = AuthenticationError("missing or invalid API key")
            return await error_response(err, scope["path"])(scope, receive, send)
        await self.app(scope, receive, send)


# ---- browser safety ------------------------------------------------------------------------
# A server on loopback is reachable from every page the user's browser opens. Three doors are
# closed here, before the key check (they hold with or without a key):
# - DNS rebinding: a page on rebind.evil whose name later resolves to 127.0.0.1 sends requests
#   with `Host: rebind.evil` and, being same-origin to itself, reads the answers. Only requests
#   whose Host is one of this server's own names are served.
# - Cross-site requests: a page's `fetch` carries its `Origin`; one that is not allowed is
#   refused outright (CORS alone only hides the answer, the request would still run).
# - "Simple" cross-site POSTs (text/plain, form bodies) need no CORS preflight: a POST must say
#   its body is JSON, which a browser only sends cross-site after a preflight.

LOCAL_ORIGINS = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"


def _host_name(value: str) -> str:
    """The name in a Host header, without its port, lower case, without a trailing dot."""
    value = value.strip().lower()
    if value.startswith("["):
        name = value[1:value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:
        name = value.split(":", 1)[0]
    else:
        name = value
    return name.rstrip(".")


@dataclass(frozen=True)
class HostPolicy:
    """Which Host names are this server's own.

    Bound to loopback: `localhost`, `*.localhost` and loopback addresses. Bound to another address:
    also any IP address (an address cannot be rebound), this machine's host name and `*.local`.
    `extra` (`serve --allowed-hosts`) adds names, `*.example.com` wildcards, or `*` for any.
    """

    names: frozenset[str]
    suffixes: tuple[str, ...]
    any_address: bool = False
    any_host: bool = False

    @classmethod
    def for_bind(cls, loopback: bool, extra: list[str] | tuple[str, ...] = ()) -> "HostPolicy":
        names, suffixes = {"localhost"}, [".localhost"]
        if not loopback:
            hostname = socket.gethostname().lower()
            names |= {hostname, hostname.split(".")[0]}
            suffixes.append(".local")
        for item in extra:
            item = item.strip().lower()
            if item.startswith("*."):
                suffixes.append(item[1:])
            elif item:
                names.add(_host_name(item))
        return cls(frozenset(names), tuple(suffixes), any_address=not loopback,
                   any_host="*" in names)

    def allows(self, host: str | None) -> bool:
        if self.any_host or not host:  # no Host at all: not a browser (HTTP/1.0 clients)
            return True
        name = _host_name(host)
        if name in self.names or name.endswith(self.suffixes):
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        return self.any_address or address.is_loopback


@dataclass(frozen=True)
class OriginPolicy:
    """Origins whose pages may call the API: this machine's own (loopback) pages, and those
    named with `serve --cors-origins` (`*` for any)."""

    extra: frozenset[str] = frozenset()

    def allows(self, origin: str) -> bool:
        return ("*" in self.extra or origin in self.extra
                or re.fullmatch(LOCAL_ORIGINS, origin) is not None)


def _is_json(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == "application/json"


class BrowserGuard:
    """403 for a foreign Host or a disallowed Origin; 415 for a POST whose body is not JSON."""

    def __init__(self, app, hosts: HostPolicy, origins: OriginPolicy):
        self.app, self.hosts, self.origins = app, hosts, origins

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        error = self.refusal(scope)
        if error is not None:
            return await error_response(error, scope["path"])(scope, receive, send)
        await self.app(scope, receive, send)

    def refusal(self, scope) -> Forbidden | UnsupportedMediaType | None:
        host = _header(scope, b"host")
        if not self.hosts.allows(host):
            return Forbidden(f"Host {host!r} is not a name of this server (a page trying DNS "
                             "rebinding, or a name to add with serve --allowed-hosts)")
        origin = _header(scope, b"origin")
        if origin is not None and not self.origins.allows(origin):
            return Forbidden(f"requests from pages at {origin} are not allowed (serve "
                             "--cors-origins lets a web app's origin in)")
        if scope["method"] == "POST" and not _is_json(_header(scope, b"content-type")):
            return UnsupportedMediaType(
                "send the body as JSON with the header 'Content-Type: application/json'")
        return None
