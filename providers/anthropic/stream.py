"""Anthropic Messages stream events -> OpenAI chunks
(https://platform.claude.com/docs/en/build-with-claude/streaming)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from gateway.errors import GatewayError
from gateway.wire.types import CHAT, COMPLETIONS
from providers.anthropic.request import JSON_TOOL, PLAIN
from providers.anthropic.response import cache_details, finish
from providers.base import TEXT_COMPLETION, StreamTranslator, chat_chunk, chunk_out, new_id, usage_dict

if TYPE_CHECKING:
    from providers.base import CallContext, SSEEvent


class AnthropicStream(StreamTranslator):
    """Messages stream events -> OpenAI chunks; one chunk id (Anthropic's message id) for the whole stream.

    Thinking blocks (thinking_delta, signature_delta) and server-tool blocks are not part of an
    OpenAI answer and are skipped, as are ``ping`` and event types newer than this code.
    """

    __slots__ = (
        "blocks",
        "cache_read",
        "cache_write",
        "completion",
        "content_chunks",
        "ctx",
        "endpoint",
        "finished",
        "id",
        "input",
        "json_tool",
        "name",
        "tools",
        "usage",
    )

    def __init__(self, name: str, endpoint: str, ctx: CallContext) -> None:
        self.name = name
        self.endpoint = endpoint
        self.ctx = ctx
        self.json_tool = (ctx.reply or PLAIN).json_tool
        self.id = new_id("msg_")
        # upstream content block index -> ("text" | "tool" | "json", OpenAI tool_calls index)
        self.blocks: dict[int, tuple[str, int]] = {}
        self.tools = 0
        self.input = self.cache_write = self.cache_read = self.completion = 0
        self.usage = None
        self.finished = False
        self.content_chunks = 0

    def feed(self, event: SSEEvent) -> list[bytes]:
        if not event.data:
            return []
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise GatewayError(
                502, f"{self.name}: the upstream sent a malformed stream event", code="upstream_bad_response"
            )
        handler = _EVENTS.get(data.get("type") or event.event or "")
        return handler(self, data) if handler is not None else []

    # -- events ------------------------------------------------------------------------------
    def _message_start(self, data: dict[str, Any]) -> list[bytes]:
        msg = data.get("message") if isinstance(data.get("message"), dict) else {}
        if isinstance(msg.get("id"), str):
            self.id = msg["id"]
        self._take_usage(msg.get("usage"))
        return [] if self.endpoint == COMPLETIONS else [self._chat({"role": "assistant", "content": ""})]

    def _block_start(self, data: dict[str, Any]) -> list[bytes]:
        block = data.get("content_block") if isinstance(data.get("content_block"), dict) else {}
        index, kind = data.get("index"), block.get("type")
        if kind == "text":
            self.blocks[index] = ("text", 0)
            return self._content(block.get("text"))
        if kind != "tool_use":
            return []  # thinking, redacted_thinking, server-tool blocks
        if self.json_tool and block.get("name") == JSON_TOOL:
            self.blocks[index] = ("json", 0)
            return []
        self.blocks[index] = ("tool", self.tools)
        call = {"index": self.tools, "id": block.get("id"), "type": "function"}
        call["function"] = {"name": block.get("name"), "arguments": ""}
        self.tools += 1
        return [self._chat({"tool_calls": [call]})] if self.endpoint == CHAT else []

    def _block_delta(self, data: dict[str, Any]) -> list[bytes]:
        kind, tool_index = self.blocks.get(data.get("index"), ("", 0))
        delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
        if delta.get("type") == "text_delta" and kind == "text":
            return self._content(delta.get("text"))
        if delta.get("type") != "input_json_delta":
            return []  # thinking_delta, signature_delta, citations_delta
        part = delta.get("partial_json")
        if kind == "json":
            return self._content(part)
        if kind != "tool" or not part or self.endpoint != CHAT:
            return []
        self.content_chunks += 1
        return [self._chat({"tool_calls": [{"index": tool_index, "function": {"arguments": part}}]})]

    def _message_delta(self, data: dict[str, Any]) -> list[bytes]:
        self._take_usage(data.get("usage"))
        reason = (data.get("delta") or {}).get("stop_reason")
        if reason is None:
            return []
        mapped = finish(reason, self.json_tool)
        if self.endpoint == COMPLETIONS:
            return [self._text_completion([{"text": "", "index": 0, "logprobs": None, "finish_reason": mapped}])]
        return [self._chat({}, mapped)]

    def _message_stop(self, data: dict[str, Any]) -> list[bytes]:
        self.finished = True
        if not self.ctx.include_usage:
            return []
        usage = self.usage or usage_dict(0, 0)
        if self.endpoint == COMPLETIONS:
            return [self._text_completion([], usage)]
        return [chunk_out(self.ctx, chat_chunk(self.ctx, self.id, [], usage))]

    def _error(self, data: dict[str, Any]) -> list[bytes]:
        err = data.get("error") if isinstance(data.get("error"), dict) else {}
        kind = str(err.get("type") or "api_error")
        overloaded = kind == "overloaded_error"
        # overloaded_error is a 529 outside a stream: 503, the status OpenAI SDKs treat as retryable.
        # The metrics reason is fixed, never the upstream's string, so its label values stay bounded.
        raise GatewayError(
            503 if overloaded else 502,
            f"{self.name}: {err.get('message') or kind}",
            type=kind,
            code=kind,
            reason="stream_overloaded" if overloaded else "stream_error",
        )

    # -- helpers -----------------------------------------------------------------------------
    def _take_usage(self, u: Any) -> None:
        """Counts are cumulative; message_delta may repeat the input counts, so each one overwrites."""
        if not isinstance(u, dict):
            return
        if isinstance(u.get("input_tokens"), int):
            self.input = u["input_tokens"]
        if isinstance(u.get("cache_creation_input_tokens"), int):
            self.cache_write = u["cache_creation_input_tokens"]
        if isinstance(u.get("cache_read_input_tokens"), int):
            self.cache_read = u["cache_read_input_tokens"]
        if isinstance(u.get("output_tokens"), int):
            self.completion = u["output_tokens"]
        prompt = self.input + self.cache_write + self.cache_read
        self.usage = usage_dict(
            prompt, self.completion, prompt_tokens_details=cache_details(self.cache_read, self.cache_write)
        )

    def _content(self, text: Any) -> list[bytes]:
        if not isinstance(text, str) or not text:
            return []
        self.content_chunks += 1
        if self.endpoint == COMPLETIONS:
            return [self._text_completion([{"text": text, "index": 0, "logprobs": None, "finish_reason": None}])]
        return [self._chat({"content": text})]

    def _chat(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return chunk_out(self.ctx, chat_chunk(self.ctx, self.id, [choice]))

    def _text_completion(self, choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        return chunk_out(self.ctx, chat_chunk(self.ctx, self.id, choices, usage, TEXT_COMPLETION))


_EVENTS: dict[str, Callable[[AnthropicStream, dict[str, Any]], list[bytes]]] = {
    "message_start": AnthropicStream._message_start,
    "content_block_start": AnthropicStream._block_start,
    "content_block_delta": AnthropicStream._block_delta,
    "message_delta": AnthropicStream._message_delta,
    "message_stop": AnthropicStream._message_stop,
    "error": AnthropicStream._error,
    # content_block_stop and ping carry nothing to relay; unknown types are ignored, as the docs ask.
}
