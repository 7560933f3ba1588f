"""The OpenAI Responses API (``POST /v1/responses``): the record and the per-request exchange.

Native providers (``Adapter.native_apis`` has ``"responses"``: OpenAI and Azure unless configured
``responses: translate``) get the body as sent with ``model`` (and a ``previous_response_id``)
rewritten, and their answer and events relayed with the response id and model rewritten. Every
other provider gets the request in the chat form (``responses_translate``) and its answer or
stream translated back; stored responses keep their items in the ``ResponseStore``.

Gateway response ids are self-routing (``resp_sy…``: provider and upstream id, as file ids are)
and owned by the key that created them.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import orjson

from gateway.apis.base import Endpoint, EventRelay
from gateway.apis.responses_object import ResponseHead, Snapshot, response_object
from gateway.apis.responses_stream import ResponsesStream
from gateway.apis.responses_translate import from_chat, history_of, input_items, stored, to_chat, validate
from gateway.errors import GatewayError
from gateway.routes.objects import Kind, decode_id, encode_id
from gateway.wire.types import CHAT

if TYPE_CHECKING:
    from gateway.apis.responses_state import ResponseStore
    from gateway.pipeline.frame import RequestContext

RESPONSE = Kind("Response", "resp_")
NAME = "responses"
# The events that carry the whole response object: its id and model are rewritten there.
_RESPONSE_EVENTS = frozenset(
    (
        "response.created",
        "response.in_progress",
        "response.queued",
        "response.completed",
        "response.incomplete",
        "response.failed",
    )
)
_TERMINAL = frozenset(("response.completed", "response.incomplete", "response.failed", "error"))


def not_found(rid: str, param: str | None = None) -> GatewayError:
    if param:
        # As OpenAI answers it (400, ``previous_response_not_found``): Codex and other clients read
        # that code to start the conversation afresh.
        return GatewayError(
            400, f"Previous response with id '{rid}' not found.", param=param, code="previous_response_not_found"
        )
    return GatewayError(404, f"Response with id '{rid}' not found.")


async def owned_record(ctx: RequestContext, rid: str, param: str | None = None) -> tuple[dict[str, Any], str, str]:
    """The stored record of a response id the caller owns, with its provider and upstream id; else 404."""
    routed = decode_id(RESPONSE, rid, ctx.state.config.providers)
    rec = await _store(ctx).get(rid) if routed is not None else None
    if routed is None or rec is None or rec.get("owner") != ctx.who.name:
        raise not_found(rid, param)
    return rec, routed[0], routed[1]


def _store(ctx: RequestContext) -> ResponseStore:
    return ctx.state.responses


def _usage_into(ctx: RequestContext, usage: Any) -> None:
    """Responses' usage (``input_tokens`` include cached ones) into the request's record."""
    if isinstance(usage, dict) and isinstance(usage.get("input_tokens"), int):
        ctx.prompt_tokens = usage["input_tokens"]
        out = usage.get("output_tokens")
        ctx.completion_tokens = out if isinstance(out, int) else 0
        details = usage.get("input_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
            ctx.cache_read = details["cached_tokens"]


class ResponsesExchange:
    """One ``POST /v1/responses``."""

    __slots__ = ("body", "created_at", "ctx", "history", "prev", "provider", "record", "response", "rid")

    def __init__(self, ctx: RequestContext, body: dict[str, Any]) -> None:
        self.ctx = ctx
        self.body = body
        self.created_at = int(time.time())
        self.history: list[dict[str, Any]] = []
        self.prev: tuple[str, str] | None = None  # a natively served previous response: provider, upstream id
        self.rid = ""
        self.response: dict[str, Any] | None = None  # a translated answer, to store
        self.record: dict[str, Any] | None = None  # what ``keep`` stores
        self.provider = ""  # the provider that answered

    async def prepare(self) -> None:
        prev = self.body.get("previous_response_id")
        if isinstance(prev, str) and prev:
            rec, provider, upstream = await owned_record(self.ctx, prev, "previous_response_id")
            if rec.get("native"):
                self.prev = (provider, upstream)
            else:
                self.history = history_of(rec)

    @property
    def pinned(self) -> str | None:
        """A follow-up of a natively served response goes back to the provider that keeps it."""
        return self.prev[0] if self.prev is not None else None

    def _new_id(self, provider: str, upstream_id: str | None = None) -> str:
        self.provider = provider
        self.rid = encode_id(RESPONSE, provider, upstream_id or "resp_" + os.urandom(12).hex())
        return self.rid

    # -- translated ----------------------------------------------------------------------------
    def chat_body(self, provider: str) -> dict[str, Any]:
        if self.prev is not None:
            raise GatewayError(
                400,
                f"previous_response_id names a response that provider '{self.prev[0]}' keeps itself; "
                f"continue the conversation with a model of that provider.",
                param="previous_response_id",
                code="unsupported_parameter",
            )
        return to_chat(self.body, self.history, provider)

    def answer(self, chat: dict[str, Any], provider: str) -> bytes:
        self.response = from_chat(chat, self.body, self._new_id(provider), self.created_at, self.ctx.model)
        self._translated_record(provider)
        return orjson.dumps(self.response)

    def encoder(self, provider: str, prompt_tokens: int) -> _Encoder:
        return _Encoder(self, ResponsesStream(self.body, self._new_id(provider), self.created_at, self.ctx.model))

    def _translated_record(self, provider: str) -> None:
        if self.body.get("store") is False or self.response is None:
            return
        items = [*self.history, *input_items(self.body)]
        self.record = {
            "owner": self.ctx.who.name,
            "provider": provider,
            "native": False,
            **stored(self.response, items),
        }

    # -- native --------------------------------------------------------------------------------
    def native_body(self, provider: str, upstream_model: str) -> dict[str, Any]:
        body = dict(self.body)
        body["model"] = upstream_model
        if body.get("previous_response_id"):
            if self.prev is None or self.prev[0] != provider:
                raise GatewayError(
                    400,
                    f"previous_response_id names a response provider '{provider}' cannot continue "
                    f"(it was answered by another provider).",
                    param="previous_response_id",
                    code="unsupported_parameter",
                )
            body["previous_response_id"] = self.prev[1]
        return body

    def native_answer(self, data: bytes, provider: str) -> bytes:
        obj = orjson.loads(data)
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            raise ValueError("not a response object")
        self._native_response(obj, provider)
        _usage_into(self.ctx, obj.get("usage"))
        return orjson.dumps(obj)

    def _native_response(self, obj: dict[str, Any], provider: str) -> None:
        """Rewrite a response object from the upstream: our id, the client's model name."""
        upstream_id = obj.get("id")
        if isinstance(upstream_id, str) and not self.rid:
            self._new_id(provider, upstream_id)
            if self.body.get("store") is not False:
                self.record = {
                    "owner": self.ctx.who.name,
                    "provider": provider,
                    "native": True,
                    "model": self.ctx.model,
                }
        if self.rid:
            obj["id"] = self.rid
        if "model" in obj:
            obj["model"] = self.ctx.model
        prev = obj.get("previous_response_id")
        if prev and isinstance(self.body.get("previous_response_id"), str):
            obj["previous_response_id"] = self.body["previous_response_id"]

    def native_relay(self, provider: str) -> _Relay:
        return _Relay(self, provider)

    async def keep(self) -> None:
        if self.record is not None and self.rid:
            await _store(self.ctx).put(self.rid, self.record)
            self.record = None


class _Encoder:
    """``ResponsesStream`` behind the pipeline's encoder interface; keeps the final response for ``keep``."""

    __slots__ = ("ex", "stream")

    def __init__(self, ex: ResponsesExchange, stream: ResponsesStream) -> None:
        self.ex = ex
        self.stream = stream

    def feed(self, chunk: dict[str, Any]) -> bytes:
        return self.stream.feed(chunk)

    def finish(self) -> bytes:
        out = self.stream.finish()
        self.ex.response = self.stream.response
        self.ex._translated_record(self.ex.provider)
        return out

    def fail(self, err: GatewayError) -> bytes:
        return self.stream.fail(err.code or "server_error", err.message)


class _Relay(EventRelay):
    """A native Responses stream: events relayed as they come, the response id and model rewritten
    in the few events that carry the whole response, usage taken from the terminal one."""

    __slots__ = ("count", "ex", "last", "provider")
    # Only these need a look: deltas and items go through as the upstream's bytes.
    marked = frozenset(name.encode() for name in _RESPONSE_EVENTS | _TERMINAL)

    def __init__(self, ex: ResponsesExchange, provider: str) -> None:
        super().__init__()
        self.ex = ex
        self.provider = provider
        self.count = 0  # events relayed: the next sequence number, should we have to end the stream
        self.last: dict[str, Any] | None = None

    def event(self, name: str | None, data: bytes) -> bytes:
        self.count += 1
        if name in _TERMINAL:
            self.finished = True
        if name not in _RESPONSE_EVENTS:
            return data
        obj = orjson.loads(data)
        resp = obj.get("response")
        if isinstance(resp, dict):
            self.ex._native_response(resp, self.provider)
            self.last = resp
            if name in _TERMINAL:
                _usage_into(self.ex.ctx, resp.get("usage"))
        return orjson.dumps(obj)

    def relayed(self, n: int) -> None:
        self.count += n

    def fail(self, err: GatewayError) -> bytes:
        """``response.failed`` after the upstream broke off: the stream still ends with a terminal event."""
        ex = self.ex
        if self.last:
            resp = dict(self.last)
        else:
            head = ResponseHead(ex.body, ex.rid or "resp_unknown", ex.created_at, ex.ctx.model)
            resp = response_object(head, Snapshot("failed", []))
        resp["status"] = "failed"
        resp["error"] = {"code": "server_error", "message": err.message}
        self.finished = True
        event = {"type": "response.failed", "sequence_number": self.count, "response": resp}
        return b"event: response.failed\ndata: " + orjson.dumps(event) + b"\n\n"


ENDPOINT = Endpoint(
    NAME,
    ("/v1/responses",),
    validate,
    CHAT,
    overflow_param="max_output_tokens",
    done=None,
    exchange=ResponsesExchange,
)
