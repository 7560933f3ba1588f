"""Anthropic's error bodies -> OpenAI-shaped errors; Anthropic's context-overflow wordings
(https://platform.claude.com/docs/en/api/errors)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from providers.base import error_text, try_json

if TYPE_CHECKING:
    from gateway.errors import GatewayError
    from providers.anthropic import AnthropicAdapter

# Anthropic's context-overflow 400 -> (window, prompt, completion) (``Capabilities.overflow_wordings``).
OVERFLOW_WORDINGS = (
    re.compile(r"prompt is too long: (?P<p>\d+) tokens > (?P<w>\d+) maximum"),
    re.compile(r"input length and `max_tokens` exceed context limit: (?P<p>\d+) \+ (?P<c>\d+) > (?P<w>\d+)"),
)


def parse_error(adapter: AnthropicAdapter, status: int, payload: bytes) -> GatewayError:
    obj = try_json(payload)
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict):
        kind = err.get("type") if isinstance(err.get("type"), str) else None
        message = str(err.get("message") or kind or f"HTTP {status}")
    else:
        kind = None
        message = error_text(status, payload)
    if status == 529 or kind == "overloaded_error":
        status = 503  # 529 is Anthropic's own; OpenAI SDKs know 503 and retry it
    return adapter.upstream_error(status, message, kind, kind)
