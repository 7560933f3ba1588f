"""Google's error bodies -> OpenAI-shaped errors; Gemini's context-overflow wording."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from providers.base import try_json

if TYPE_CHECKING:
    from gateway.errors import GatewayError
    from providers.gemini import GeminiAdapter

# Gemini's context-overflow 400 -> (window, prompt, completion) (``Capabilities.overflow_wordings``).
OVERFLOW_WORDINGS = (
    re.compile(r"input token count \((?P<p>\d+)\) exceeds the maximum number of tokens allowed \((?P<w>\d+)\)"),
)

# Google's RPC status -> OpenAI error type (https://ai.google.dev/gemini-api/docs/troubleshooting).
_RPC_TYPES = {
    "INVALID_ARGUMENT": "invalid_request_error",
    "FAILED_PRECONDITION": "invalid_request_error",
    "OUT_OF_RANGE": "invalid_request_error",
    "UNAUTHENTICATED": "authentication_error",
    "PERMISSION_DENIED": "permission_error",
    "NOT_FOUND": "not_found_error",
    "RESOURCE_EXHAUSTED": "rate_limit_exceeded",
}


def parse_error(adapter: GeminiAdapter, status: int, payload: bytes) -> GatewayError:
    obj = try_json(payload)
    if isinstance(obj, list) and len(obj) == 1:  # non-SSE streams wrap the error in an array
        obj = obj[0]
    if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
        return google_error(adapter, status, obj["error"])
    return adapter.plain_error(status, payload)


def google_error(adapter: GeminiAdapter, status: int, err: dict[str, Any]) -> GatewayError:
    """Google's ``{"code", "message", "status", "details"}`` as an OpenAI-shaped error."""
    rpc = err.get("status") if isinstance(err.get("status"), str) else None
    if rpc == "RESOURCE_EXHAUSTED":
        status = 429
    e = adapter.upstream_error(
        status,
        str(err.get("message") or f"HTTP {status}"),
        _RPC_TYPES.get(rpc or "") or adapter.status_types.get(status),
        code=rpc,
    )
    delay = _retry_delay(err.get("details"))
    if status == 429 and delay is not None:
        e.headers["Retry-After"] = str(delay)
    return e


def _retry_delay(details: Any) -> int | None:
    """Whole seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "13.5s"``)."""
    for d in details if isinstance(details, list) else []:
        delay = d.get("retryDelay") if isinstance(d, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(1, math.ceil(float(delay[:-1])))
            except (ValueError, OverflowError):
                return None
    return None
