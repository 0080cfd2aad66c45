"""LocalgwError → the OpenAI error JSON, for handlers and middleware alike."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from localgw.errors import LocalgwError, MethodNotAllowed, NotFound

log = logging.getLogger("localgw.server")


def error_response(exc: LocalgwError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers=exc.headers)


async def handle_localgw_error(request: Request, exc: LocalgwError) -> JSONResponse:
    return error_response(exc)


async def handle_http_exception(request: Request, exc: HTTPException) -> JSONResponse:
    if exc.status_code == 405:
        return error_response(MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}"))
    if exc.status_code == 404:
        return error_response(NotFound(f"no such endpoint: {request.method} {request.url.path}"))
    err = LocalgwError(str(exc.detail))
    err.status = exc.status_code
    return error_response(err)


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(LocalgwError(f"internal error: {type(exc).__name__}: {exc}"))
