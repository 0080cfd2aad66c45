"""Pure ASGI middleware (no BaseHTTPMiddleware: it breaks streaming and disconnects)."""

from __future__ import annotations

import hmac
import re
import secrets

from localgw.errors import AuthenticationError, RequestTooLarge
from localgw.server.errors import error_response

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
