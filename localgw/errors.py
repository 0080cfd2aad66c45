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


class Forbidden(LocalgwError):
    """Refused before reading: a Host that is not this server's, or an Origin not allowed."""

    status = 403
    type = "permission_error"
    code = "forbidden"


class MethodNotAllowed(LocalgwError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTooLarge(LocalgwError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaType(LocalgwError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class QueueFull(LocalgwError):
    status = 429
    type = "rate_limit_error"
    code = "queue_full"


class ModelLoadError(LocalgwError):
    status = 500
    type = "server_error"
    code = "model_load_failed"


class ModelFailed(LocalgwError):
    """The model's decode loop failed: its requests end with this, and it is reloaded."""

    status = 500
    type = "server_error"
    code = "model_failed"


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


class ConfigError(LocalgwError):
    """A setting `serve` was given (a flag, upstreams.toml) that cannot be used as written."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_config"


class UpstreamError(LocalgwError):
    """An upstream engine failed us: the message always names it as `upstream NAME (URL): …`."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamUnreachable(UpstreamError):
    """Connection refused, DNS, TLS or a timeout before the first byte: the next upstream may do."""


class UpstreamBroken(UpstreamError):
    """The upstream stopped mid-answer or sent something that is not its protocol."""


class UpstreamRejected(UpstreamError):
    """The upstream answered with an error status; its message is kept, its status when the
    client's request was at fault (4xx), 502 when the upstream was (5xx, or our key refused)."""

    def __init__(self, message: str, *, status: int = 502, type: str | None = None,
                 code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message, param=param, code=code, headers=headers)
        self.status = status
        if type is not None:
            self.type = type
