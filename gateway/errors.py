"""One exception type for every failure, rendered as OpenAI's error body.

The OpenAI SDKs pick their exception class from the HTTP status and read
``error.message/type/param/code``; keeping to that shape everywhere means a client
never has to know it is talking to a gateway.
"""

from __future__ import annotations

import orjson

# status -> default OpenAI error type
_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "timeout_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
    499: "client_closed_request",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class GatewayError(Exception):
    """A failure with an HTTP status and OpenAI's four error fields."""

    __slots__ = ("code", "headers", "message", "param", "reason", "status", "type")

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message if isinstance(message, str) else str(message)
        # Fields an upstream filled in may be anything (an object for ``type``): OpenAI's are strings.
        if not isinstance(type, str) or not type:
            type = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.type = type
        self.param = _field(param)
        self.code = _field(code)
        self.headers = headers or {}
        # Short machine label for metrics (``upstream_errors_total{reason}``).
        self.reason = reason or code or self.type

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.body())

    def sse_event(self) -> bytes:
        """The mid-stream form: one ``data:`` event the OpenAI SDKs raise on."""
        err = {"message": self.message, "type": self.type, "code": self.code}
        if self.param is not None:
            err["param"] = self.param
        return b"data: " + orjson.dumps({"error": err}) + b"\n\n"


def _field(v: object) -> str | None:
    """``param`` and ``code`` as OpenAI sends them: a string or null (an upstream's object dropped)."""
    if v is None or isinstance(v, str):
        return v
    return None if isinstance(v, (dict, list)) else str(v)


def invalid(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def missing(param: str) -> GatewayError:
    return GatewayError(400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


def invalid_api_key() -> GatewayError:
    return GatewayError(
        401,
        "Incorrect API key provided. Pass it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'.",
        code="invalid_api_key",
    )


def model_not_found(model: str) -> GatewayError:
    return _about_model(404, f"The model '{model}' does not exist or you do not have access to it.", "model_not_found")


def model_not_allowed(model: str) -> GatewayError:
    return _about_model(403, f"This API key is not allowed to use the model '{model}'.", "model_not_allowed")


def _about_model(status: int, message: str, code: str) -> GatewayError:
    return GatewayError(status, message, param="model", code=code)


def forbidden(message: str) -> GatewayError:
    """A 403 for a key that may not do this (OpenAI's ``permission_error``)."""
    return GatewayError(403, message, code="permission_error")


def store_unavailable(message: str, code: str) -> GatewayError:
    """A 503 for a store (Redis) the answer depends on that cannot be reached right now."""
    return GatewayError(503, message, code=code, headers={"retry-after": "5"})


def not_found_route(method: str, path: str) -> GatewayError:
    return GatewayError(404, f"Unknown request URL: {method} {path}.", code="unknown_url")
