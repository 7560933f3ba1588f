"""The Anthropic Messages API (``POST /v1/messages``, ``POST /v1/messages/count_tokens``).

Providers of kind ``anthropic`` (``Adapter.native_apis`` has ``"messages"``) get the body as
sent, only ``model`` rewritten, with the client's ``anthropic-version`` and ``anthropic-beta``;
their answer and events are relayed as they come (the model name in ``message_start`` rewritten
to the client's), usage taken from ``message_start`` and ``message_delta``. Every other provider
gets the chat form (``messages_translate``) and its answer or stream translated back. Errors on
these routes are Anthropic's shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from gateway.apis.base import Endpoint, EventRelay
from gateway.apis.messages_translate import (
    MessagesStream,
    count_text,
    error_body,
    error_event,
    error_status,
    from_chat,
    to_chat,
    validate,
)
from gateway.errors import GatewayError
from gateway.wire.types import CHAT

if TYPE_CHECKING:
    from gateway.pipeline.frame import RequestContext

NAME = "messages"


class AnthropicErrors:
    """``{"type": "error", "error": {"type", "message"}}``; 503 answered as 529 ``overloaded_error``."""

    def answer(self, err: GatewayError) -> tuple[int, bytes]:
        return error_status(err), error_body(err)

    def event(self, err: GatewayError) -> bytes:
        return error_event(err)


ANTHROPIC_ERRORS = AnthropicErrors()


def usage_into(ctx: RequestContext, usage: Any, *, final: bool = False) -> None:
    """Anthropic's usage into the record: cache reads and writes count as prompt tokens too."""
    if not isinstance(usage, dict):
        return
    inp = usage.get("input_tokens")
    if isinstance(inp, int):
        read = usage.get("cache_read_input_tokens")
        write = usage.get("cache_creation_input_tokens")
        ctx.cache_read = read if isinstance(read, int) else ctx.cache_read
        ctx.cache_write = write if isinstance(write, int) else ctx.cache_write
        ctx.prompt_tokens = inp + ctx.cache_read + ctx.cache_write
    out = usage.get("output_tokens")
    if isinstance(out, int):
        ctx.completion_tokens = out


class MessagesExchange:
    """One ``POST /v1/messages``."""

    __slots__ = ("body", "ctx")
    pinned = None  # every turn carries the whole conversation: any deployment will do

    def __init__(self, ctx: RequestContext, body: dict[str, Any]) -> None:
        self.ctx = ctx
        self.body = body

    async def prepare(self) -> None:
        return None

    def chat_body(self, provider: str) -> dict[str, Any]:
        return to_chat(self.body, provider)

    def answer(self, chat: dict[str, Any], provider: str) -> bytes:
        return orjson.dumps(from_chat(chat, self.ctx.model, self.body.get("stop_sequences")))

    def encoder(self, provider: str, prompt_tokens: int) -> _Encoder:
        return _Encoder(MessagesStream(self.ctx.model, prompt_tokens, stop_sequences=self.body.get("stop_sequences")))

    def native_body(self, provider: str, upstream_model: str) -> dict[str, Any]:
        body = dict(self.body)
        body["model"] = upstream_model
        return body

    def native_answer(self, data: bytes, provider: str) -> bytes:
        obj = orjson.loads(data)
        if not isinstance(obj, dict) or obj.get("type") != "message":
            raise ValueError("not a message")
        obj["model"] = self.ctx.model
        usage_into(self.ctx, obj.get("usage"))
        return orjson.dumps(obj)

    def native_relay(self, provider: str) -> _Relay:
        return _Relay(self.ctx)

    async def keep(self) -> None:
        return None


class _Encoder:
    __slots__ = ("stream",)

    def __init__(self, stream: MessagesStream) -> None:
        self.stream = stream

    def feed(self, chunk: dict[str, Any]) -> bytes:
        return self.stream.feed(chunk)

    def finish(self) -> bytes:
        return self.stream.finish()

    def fail(self, err: GatewayError) -> bytes:
        return self.stream.error(err)


class _Relay(EventRelay):
    """A native Messages stream: events relayed as they come; ``message_start`` gets the client's
    model name; usage from ``message_start`` and ``message_delta``; ``message_stop`` ends it."""

    __slots__ = ("ctx",)
    # Only these need a look: the deltas of content blocks go through as the upstream's bytes.
    marked = frozenset((b"message_start", b"message_delta", b"message_stop", b"error"))

    def __init__(self, ctx: RequestContext) -> None:
        super().__init__()
        self.ctx = ctx

    def event(self, name: str | None, data: bytes) -> bytes:
        if name == "message_start":
            obj = orjson.loads(data)
            msg = obj.get("message")
            if isinstance(msg, dict):
                msg["model"] = self.ctx.model
                usage_into(self.ctx, msg.get("usage"))
            return orjson.dumps(obj)
        if name == "message_delta":
            usage_into(self.ctx, orjson.loads(data).get("usage"))
        elif name in ("message_stop", "error"):
            self.finished = True
        return data

    def fail(self, err: GatewayError) -> bytes:
        self.finished = True
        return error_event(err)


ENDPOINT = Endpoint(
    NAME,
    ("/v1/messages",),
    validate,
    CHAT,
    errors=ANTHROPIC_ERRORS,
    done=None,
    exchange=MessagesExchange,
)

__all__ = ["ANTHROPIC_ERRORS", "ENDPOINT", "count_text"]
