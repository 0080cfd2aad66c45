"""LocalgwError → the error JSON, for handlers and middleware alike.

The OpenAI shape everywhere, except under `/v1/messages`, where Anthropic clients expect theirs:
the shape is chosen by the request path, so a 401 or 413 from the middleware gets it too.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from localgw.errors import LocalgwError, MethodNotAllowed, NotFound
from localgw.protocols import anthropic


def _anthropic_path(path: str) -> bool:
    return path == "/v1/messages" or path.startswith("/v1/messages/")


def error_body(exc: LocalgwError, path: str = "") -> dict:
    if _anthropic_path(path):
        return anthropic.error_body(exc)
    return exc.to_dict()


def error_response(exc: LocalgwError, path: str = "") -> JSONResponse:
    return JSONResponse(error_body(exc, path), status_code=exc.status, headers=exc.headers)


async def handle_localgw_error(request: Request, exc: LocalgwError) -> JSONResponse:
    return error_response(exc, request.url.path)


async def handle_http_exception(request: Request, exc: HTTPException) -> JSONResponse:
    if exc.status_code == 405:
        err = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        return error_response(err, request.url.path)
    if exc.status_code == 404:
        return error_response(NotFound(f"no such endpoint: {request.method} {request.url.path}"),
                              request.url.path)
    err = LocalgwError(str(exc.detail))
    err.status = exc.status_code
    return error_response(err, request.url.path)
