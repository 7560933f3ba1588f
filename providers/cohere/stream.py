"""Cohere v2 stream events -> OpenAI chunks (https://docs.cohere.com/reference/chat-stream)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.errors import GatewayError
from providers.base import CHAT_CHUNK, TEXT_COMPLETION, StreamTranslator, chat_chunk, chunk_out, new_id
from providers.cohere.response import cohere_usage, finish, openai_logprobs

if TYPE_CHECKING:
    from providers.base import CallContext, SSEEvent
    from providers.cohere import CohereAdapter


class CohereStream(StreamTranslator):
    """Cohere v2 stream events -> OpenAI chunks, keyed on each event's ``type`` field."""

    __slots__ = ("adapter", "chunk_id", "completions", "content_chunks", "ctx", "finished", "usage")

    def __init__(self, adapter: CohereAdapter, ctx: CallContext, completions: bool) -> None:
        self.adapter = adapter
        self.ctx = ctx
        self.completions = completions
        self.chunk_id = new_id("cmpl-" if completions else "chatcmpl-")
        self.usage = None
        self.finished = False
        self.content_chunks = 0

    def feed(self, event: SSEEvent) -> list[bytes]:
        if not event.data.strip() or event.data == b"[DONE]":
            return []
        obj = self.adapter.json_object(event.data, "malformed stream event")
        kind = obj.get("type") or event.event
        if kind == "error" or ("type" not in obj and isinstance(obj.get("message"), str)):
            raise GatewayError(
                502, f"{self.adapter.name}: {obj.get('message') or 'stream error'}", code="upstream_error"
            )
        delta = obj.get("delta") if isinstance(obj.get("delta"), dict) else {}
        message = delta.get("message") if isinstance(delta.get("message"), dict) else {}
        handler = _HANDLERS.get(kind)
        return handler(self, obj, delta, message) if handler else []

    # Each handler returns the chunk payloads for one event type.
    def _start(self, obj: dict[str, Any], delta: dict[str, Any], message: dict[str, Any]) -> list[bytes]:
        if isinstance(obj.get("id"), str) and obj["id"]:
            self.chunk_id = obj["id"]
        if self.completions:
            return []
        return [self._chunk({"role": "assistant", "content": ""})]

    def _content(self, obj: dict[str, Any], delta: dict[str, Any], message: dict[str, Any]) -> list[bytes]:
        content = message.get("content") if isinstance(message.get("content"), dict) else {}
        text, thinking = content.get("text"), content.get("thinking")
        lp = obj.get("logprobs")
        logprobs = openai_logprobs([lp] if isinstance(lp, dict) else lp) if lp else None
        if isinstance(text, str) and text:
            self.content_chunks += 1
            return [self._chunk({"content": text}, logprobs=logprobs)]
        if isinstance(thinking, str) and thinking and not self.completions:
            return [self._chunk({"reasoning_content": thinking})]
        return []

    def _plan(self, obj: dict[str, Any], delta: dict[str, Any], message: dict[str, Any]) -> list[bytes]:
        plan = message.get("tool_plan")
        if isinstance(plan, str) and plan and not self.completions:
            self.content_chunks += 1
            return [self._chunk({"content": plan})]
        return []

    def _tool_start(self, obj: dict[str, Any], delta: dict[str, Any], message: dict[str, Any]) -> list[bytes]:
        call = message.get("tool_calls") if isinstance(message.get("tool_calls"), dict) else {}
        fn = call.get("function") if isinstance(call.get("function"), dict) else {}
        entry = {
            "index": obj.get("index") or 0,
            "id": call.get("id"),
            "type": "function",
            "function": {"name": fn.get("name"), "arguments": fn.get("arguments") or ""},
        }
        return [self._chunk({"tool_calls": [entry]})]

    def _tool_delta(self, obj: dict[str, Any], delta: dict[str, Any], message: dict[str, Any]) -> list[bytes]:
        call = message.get("tool_calls") if isinstance(message.get("tool_calls"), dict) else {}
        args = (call.get("function") or {}).get("arguments")
        if not isinstance(args, str) or not args:
            return []
        self.content_chunks += 1
        return [self._chunk({"tool_calls": [{"index": obj.get("index") or 0, "function": {"arguments": args}}]})]

    def _end(self, obj: dict[str, Any], delta: dict[str, Any], message: dict[str, Any]) -> list[bytes]:
        reason = finish(self.adapter, delta.get("finish_reason"), delta.get("error"))
        self.usage = cohere_usage(delta.get("usage"))
        self.finished = True
        out = [self._chunk({}, finish=reason)]
        if self.ctx.include_usage:
            out.append(self._payload([], self.usage))
        return out

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> bytes:
        if self.completions:
            choice = {"text": delta.get("content", ""), "index": 0, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return self._payload([choice], None)

    def _payload(self, choices: list[dict[str, Any]], usage: Any) -> bytes:
        obj = TEXT_COMPLETION if self.completions else CHAT_CHUNK
        return chunk_out(self.ctx, chat_chunk(self.ctx, self.chunk_id, choices, usage, obj))


_HANDLERS: dict[str, Callable[[CohereStream, dict[str, Any], dict[str, Any], dict[str, Any]], list[bytes]]] = {
    "message-start": CohereStream._start,
    "content-delta": CohereStream._content,
    "tool-plan-delta": CohereStream._plan,
    "tool-call-start": CohereStream._tool_start,
    "tool-call-delta": CohereStream._tool_delta,
    "message-end": CohereStream._end,
}
