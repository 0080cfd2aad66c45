"""One error hierarchy, rendered as OpenAI JSON by the server, one line by the CLI."""

from __future__ import annotations


class LocalgwError(Exception):
    """Base of every error a user can see. Carries the HTTP status and OpenAI error type/code."""

    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def to_dict(self) -> dict:
        return {"error": {"message": self.message, "type": self.type,
                          "param": self.param, "code": self.code}}


class InvalidRequest(LocalgwError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class AuthenticationError(LocalgwError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class ModelNotFound(LocalgwError):
    status = 404
    type = "model_not_found"
    code = "model_not_found"


class NotFound(LocalgwError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(LocalgwError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTooLarge(LocalgwError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class QueueFull(LocalgwError):
    status = 429
    type = "rate_limit_error"
    code = "queue_full"


class ModelLoadError(LocalgwError):
    status = 500
    type = "server_error"
    code = "model_load_failed"


class InsufficientMemory(LocalgwError):
    """The model (at this context and offload) does not fit the memory that is free."""

    status = 500
    type = "server_error"
    code = "insufficient_memory"


class ServiceUnavailable(LocalgwError):
    status = 503
    type = "service_unavailable"
    code = "service_unavailable"


class StoreError(LocalgwError):
    """A problem with the local model store (bad path, unknown id, unreadable GGUF)."""

    status = 400
    type = "invalid_request_error"


class HubError(LocalgwError):
    """A problem talking to the Hugging Face Hub or resolving a model there."""

    status = 502
    type = "server_error"
