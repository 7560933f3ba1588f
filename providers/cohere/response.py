"""Cohere ``/v2/chat`` answers -> OpenAI ``chat.completion`` / ``text_completion``; finish reasons and usage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from gateway.errors import GatewayError
from gateway.wire.types import COMPLETIONS
from providers.base import TEXT_COMPLETION, FinishReason, finish_reasons, new_id, usage_dict

if TYPE_CHECKING:
    from providers.base import CallContext
    from providers.cohere import CohereAdapter

FINISH = finish_reasons(
    stop="COMPLETE STOP_SEQUENCE", length="MAX_TOKENS ERROR_LIMIT", tool_calls="TOOL_CALL", content_filter="ERROR_TOXIC"
)
_FAILED = {"ERROR", "TIMEOUT"}


def answer(adapter: CohereAdapter, endpoint: str, obj: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    message = obj.get("message")
    if not isinstance(message, dict):
        raise adapter.bad_response("no 'message' object")
    reason = finish(adapter, obj.get("finish_reason"), obj.get("error"))
    text, reasoning = _texts(message.get("content"))
    usage = cohere_usage(obj.get("usage"))
    if endpoint == COMPLETIONS:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": reason}
        return _envelope(obj, ctx, TEXT_COMPLETION, choice, usage)
    msg: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    calls = message.get("tool_calls")
    if calls:
        msg["tool_calls"] = [_tool_call(c) for c in calls if isinstance(c, dict)]
        msg["content"] = text or message.get("tool_plan") or None
    if reasoning:
        msg["reasoning_content"] = reasoning
    logprobs = obj.get("logprobs")
    choice = {
        "index": 0,
        "message": msg,
        "logprobs": openai_logprobs(logprobs) if isinstance(logprobs, list) else None,
        "finish_reason": reason,
    }
    return _envelope(obj, ctx, "chat.completion", choice, usage)


def finish(adapter: CohereAdapter, reason: Any, error: Any = None) -> FinishReason:
    """OpenAI's finish reason; ``ERROR``/``TIMEOUT`` are an upstream failure, never a clean stop."""
    if reason in _FAILED:
        detail = f": {error}" if error else ""
        raise GatewayError(
            502,
            f"{adapter.name}: the upstream stopped with finish_reason {reason}{detail}",
            code="upstream_error",
            reason="finish_error",
        )
    return FINISH.get(reason, "stop")


def cohere_usage(usage: Any) -> dict[str, Any] | None:
    """OpenAI usage from Cohere's: ``tokens`` first, ``billed_units`` as the fallback."""
    if not isinstance(usage, dict):
        return None
    for key in ("tokens", "billed_units"):
        counts = usage.get(key)
        if isinstance(counts, dict) and counts.get("input_tokens") is not None:
            return usage_dict(int(counts.get("input_tokens") or 0), int(counts.get("output_tokens") or 0))
    return None


def openai_logprobs(items: list[Any]) -> dict[str, Any]:
    """Cohere's ``[{text, token_ids, logprobs}]`` as OpenAI's chat logprobs (one entry per text piece)."""
    content = []
    for item in items:
        if not isinstance(item, dict):
            continue
        text = item.get("text") or ""
        content.append(
            {
                "token": text,
                "logprob": float(sum(item.get("logprobs") or ())),
                "bytes": list(text.encode()),
                "top_logprobs": [],
            }
        )
    return {"content": content, "refusal": None}


def _texts(content: Any) -> tuple[str, str]:
    """(text, thinking) joined from Cohere's content parts."""
    if isinstance(content, str):
        return content, ""
    text, thinking = [], []
    for part in content if isinstance(content, list) else ():
        if isinstance(part, dict) and part.get("type") == "text":
            text.append(part.get("text") or "")
        elif isinstance(part, dict) and part.get("type") == "thinking":
            thinking.append(part.get("thinking") or "")
    return "".join(text), "".join(thinking)


def _tool_call(c: dict[str, Any]) -> dict[str, Any]:
    fn = c.get("function") or {}
    args = fn.get("arguments")
    return {
        "id": c.get("id"),
        "type": "function",
        "function": {
            "name": fn.get("name"),
            "arguments": args if isinstance(args, str) else orjson.dumps(args or {}).decode(),
        },
    }


def _envelope(obj: dict[str, Any], ctx: CallContext, kind: str, choice: dict[str, Any], usage: Any) -> dict[str, Any]:
    return {
        "id": obj.get("id") or new_id("chatcmpl-"),
        "object": kind,
        "created": ctx.created,
        "model": ctx.client_model,
        "choices": [choice],
        "usage": usage,
    }
