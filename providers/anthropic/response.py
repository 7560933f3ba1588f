"""Anthropic Messages answers -> OpenAI ``chat.completion`` / ``text_completion``; stop reasons and usage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from gateway.wire.types import COMPLETIONS
from providers.anthropic.request import JSON_TOOL, PLAIN
from providers.base import TEXT_COMPLETION, FinishReason, finish_reasons, load_json, new_id, usage_dict

if TYPE_CHECKING:
    from providers.anthropic import AnthropicAdapter
    from providers.base import CallContext

FINISH = finish_reasons(
    stop="end_turn stop_sequence pause_turn",
    length="max_tokens model_context_window_exceeded",
    tool_calls="tool_use",
    content_filter="refusal",
)


def answer(adapter: AnthropicAdapter, endpoint: str, payload: bytes, ctx: CallContext) -> dict[str, Any]:
    msg = load_json(payload, adapter)
    # Anthropic's shorter examples leave out "type"; anything else typed (an error) is not an answer.
    if not isinstance(msg, dict) or msg.get("type", "message") != "message" or not isinstance(msg.get("content"), list):
        raise adapter.bad_response("not a Messages API message")
    json_tool = (ctx.reply or PLAIN).json_tool
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in msg["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            args = orjson.dumps(block.get("input") or {}).decode()
            if json_tool and block.get("name") == JSON_TOOL:
                texts.append(args)
            else:
                fn = {"name": block.get("name"), "arguments": args}
                calls.append({"id": block.get("id"), "type": "function", "function": fn})
        # thinking, redacted_thinking and server-tool blocks have no place in an OpenAI answer
    reason = finish(msg.get("stop_reason"), json_tool)
    head = {"id": msg.get("id") or new_id("msg_"), "created": ctx.created, "model": ctx.client_model}
    # No usage from upstream: none to the client either, so the gateway records an estimate.
    tail = {"usage": usage(msg["usage"])} if isinstance(msg.get("usage"), dict) else {}
    if endpoint == COMPLETIONS:
        choice = {"text": "".join(texts), "index": 0, "logprobs": None, "finish_reason": reason}
        return {**head, "object": TEXT_COMPLETION, "choices": [choice], **tail}
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": reason}
    return {**head, "object": "chat.completion", "choices": [choice], **tail}


def finish(stop_reason: Any, json_tool: bool) -> FinishReason:
    if json_tool and stop_reason == "tool_use":
        return "stop"  # the forced JSON tool is the answer, not a call for the client to run
    return FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def usage(u: dict[str, Any]) -> dict[str, Any]:
    """Anthropic counts cache writes and reads apart from input_tokens; OpenAI's prompt_tokens holds them all."""
    cache_read = _int(u.get("cache_read_input_tokens"))
    cache_write = _int(u.get("cache_creation_input_tokens"))
    prompt = _int(u.get("input_tokens")) + cache_write + cache_read
    return usage_dict(
        prompt, _int(u.get("output_tokens")), prompt_tokens_details=cache_details(cache_read, cache_write)
    )


def cache_details(cache_read: int, cache_write: int) -> dict[str, int]:
    """``cached_tokens`` as OpenAI's; cache writes (billed dearer by Anthropic) as ``cache_write_tokens``,
    the Responses API's name for them, only when there are any."""
    details = {"cached_tokens": cache_read}
    if cache_write:
        details["cache_write_tokens"] = cache_write
    return details
