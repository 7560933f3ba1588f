"""Cohere v2 dialect: ``/v2/chat`` and ``/v2/embed`` behind OpenAI's chat, completions and embeddings.

Reference: https://docs.cohere.com/reference/chat (request, response, finish reasons, usage),
https://docs.cohere.com/reference/chat-stream and https://docs.cohere.com/v2/docs/streaming
(stream events), https://docs.cohere.com/v2/docs/tool-use-overview (tool messages),
https://docs.cohere.com/reference/embed (embeddings). The request side is one table,
``CHAT_PARAMS``; every other OpenAI field is refused with a 400 naming it, never dropped.

Decisions where the two APIs differ:
- usage comes from ``usage.tokens`` (what the model read and wrote, like OpenAI's counts and
  what context budgets are about); ``usage.billed_units`` is the fallback when it is missing;
- finish ``ERROR``/``TIMEOUT`` is an upstream failure (502, or an SSE error mid-stream), not a
  clean ``stop`` that would pass a broken answer off as complete;
- ``top_p`` is clamped into Cohere's ``p`` range [0.01, 0.99], so OpenAI's common ``1.0`` works;
- a forced function (``tool_choice: {"function": ...}``) becomes ``REQUIRED`` with only that tool;
- ``tool_plan`` (Cohere's text before tool calls) is the assistant ``content``, and back again;
- embeddings: ``input_type`` is the client's extra field if given, else ``search_document``;
  base64 is encoded here from floats, exactly as OpenAI encodes (little-endian float32).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import GatewayError
from providers.base import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    Adapter,
    CallContext,
    Capabilities,
    SSEEvent,
    StreamTranslator,
    Target,
    UpstreamRequest,
    chat_chunk,
    load_json,
    new_id,
    usage_dict,
)

DEFAULT_BASE_URL = "https://api.cohere.com"
PATHS = {CHAT: "/v2/chat", COMPLETIONS: "/v2/chat", EMBEDDINGS: "/v2/embed"}

FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "ERROR_LIMIT": "length",
    "TOOL_CALL": "tool_calls",
    "ERROR_TOXIC": "content_filter",
}
_FAILED = {"ERROR", "TIMEOUT"}

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
    498: "authentication_error",
}


# -- request: one table ----------------------------------------------------------------------

Transform = Callable[[Any], Any]


def _same(v: Any) -> Any:
    return v


def _stop_sequences(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


def _p(v: Any) -> Any:
    # Cohere's p is documented in [0.01, 0.99]; OpenAI's 1.0 means "no nucleus cut".
    return min(max(v, 0.01), 0.99) if isinstance(v, int | float) and not isinstance(v, bool) else v


# OpenAI field -> (Cohere field, transform). Fields mapped by hand: messages, tools, tool_choice,
# response_format (chat) and prompt (completions).
CHAT_PARAMS: dict[str, tuple[str, Transform]] = {
    "stream": ("stream", _same),
    "max_tokens": ("max_tokens", _same),
    "max_completion_tokens": ("max_tokens", _same),
    "stop": ("stop_sequences", _stop_sequences),
    "temperature": ("temperature", _same),
    "top_p": ("p", _p),
    "top_k": ("k", _same),
    "seed": ("seed", _same),
    "frequency_penalty": ("frequency_penalty", _same),
    "presence_penalty": ("presence_penalty", _same),
    "logprobs": ("logprobs", _same),
}
# Cohere's own fields a client may pass as extras; forwarded as they are.
COHERE_EXTRAS = ("safety_mode", "documents", "citation_options", "strict_tools", "thinking", "priority")
# Mapped by hand (messages, tools, tool_choice, response_format, prompt) or with nothing to send:
# stream_options is the gateway's business, user an end-user tag Cohere has no field for.
_HANDLED = {"model", "messages", "tools", "tool_choice", "response_format", "prompt", "stream_options", "user"}
# field -> the values Cohere can honour by default (anything else is a 400).
_DEFAULT_ONLY: dict[str, tuple[Any, ...]] = {
    "n": (None, 1),
    "parallel_tool_calls": (None, True),
    "top_logprobs": (None, 0),
    "echo": (None, False),
    "suffix": (None, ""),
    "best_of": (None, 1),
    "store": (None, False),
    "modalities": (None, ["text"]),
}


@dataclass(frozen=True, slots=True)
class CohereReply:
    """What the way back needs to know of the request (``CallContext.reply``)."""

    base64: bool = False  # embeddings: encoding_format base64 (Cohere is asked for floats)


_FLOATS = CohereReply()
_BASE64 = CohereReply(base64=True)


class CohereAdapter(Adapter):
    kind = "cohere"
    capabilities = Capabilities(endpoints=frozenset({CHAT, COMPLETIONS, EMBEDDINGS}))

    def __init__(self, name: str, cfg: Any) -> None:
        super().__init__(name, cfg)
        base = (cfg.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._urls = {ep: base + path for ep, path in PATHS.items()}
        headers = {"content-type": "application/json"}
        headers.update({k.lower(): v for k, v in cfg.headers.items()})
        if cfg.api_key is not None and cfg.api_key.get_secret_value():
            headers["authorization"] = f"Bearer {cfg.api_key.get_secret_value()}"
        self._headers = headers

    # -- build -------------------------------------------------------------------------------
    def build(self, endpoint: str, body: dict[str, Any], target: Target, ctx: CallContext) -> UpstreamRequest:
        out = self._embed_body(body, target, ctx) if endpoint == EMBEDDINGS else self._chat_body(endpoint, body, target)
        stream = out.get("stream") is True
        headers = dict(self._headers)
        headers["accept"] = "text/event-stream" if stream else "application/json"
        return UpstreamRequest("POST", self._urls[endpoint], headers, orjson.dumps(out), stream)

    def _chat_body(self, endpoint: str, body: dict[str, Any], target: Target) -> dict[str, Any]:
        if endpoint == COMPLETIONS:
            if body.get("logprobs") is not None:
                raise self.unsupported("logprobs", "Cohere returns no alternatives for legacy completions")
            messages = [{"role": "user", "content": self._single_prompt(body.get("prompt"))}]
        else:
            messages = [self._message(m, i) for i, m in enumerate(body.get("messages") or [])]
        out: dict[str, Any] = {"model": target.upstream_model, "messages": messages}
        for key, value in body.items():
            if value is None or value == {} or value == []:
                continue  # null or an empty object/array asks for nothing (frameworks send logit_bias: {})
            if key in CHAT_PARAMS:
                if value is not None:
                    name, transform = CHAT_PARAMS[key]
                    out[name] = transform(value)
            elif key in COHERE_EXTRAS:
                out[key] = value
            elif key in _DEFAULT_ONLY:
                if value not in _DEFAULT_ONLY[key]:
                    raise self.unsupported(key)
            elif key not in _HANDLED:
                raise self.unsupported(key)
        if body.get("tools"):
            out.update(self._tools(body["tools"], body.get("tool_choice")))
        elif body.get("tool_choice") not in (None, "none", "auto"):
            raise self.unsupported("tool_choice", "no tools were given")
        if body.get("response_format") is not None:
            fmt = self._response_format(body["response_format"])
            if fmt is not None:
                out["response_format"] = fmt
        return out

    def _single_prompt(self, prompt: Any) -> str:
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            return prompt[0]
        if isinstance(prompt, str):
            return prompt
        raise self.unsupported("prompt", "Cohere takes one text prompt (no prompt lists or token ids)")

    def _message(self, m: dict[str, Any], i: int) -> dict[str, Any]:
        role = m.get("role")
        if role in ("system", "developer"):
            return {"role": "system", "content": self._content(m.get("content"), i, images=False)}
        if role == "user":
            return {"role": "user", "content": self._content(m.get("content"), i, images=True)}
        if role == "assistant":
            return self._assistant(m, i)
        if role == "tool":
            return {
                "role": "tool",
                "tool_call_id": m.get("tool_call_id"),
                "content": self._content(m.get("content"), i, images=False),
            }
        raise GatewayError(
            400, f"Provider '{self.name}' (cohere) does not support the message role '{role}'.", param=f"messages[{i}]"
        )

    def _content(self, content: Any, i: int, images: bool) -> Any:
        if content is None or isinstance(content, str):
            return content or ""
        if not isinstance(content, list):
            raise GatewayError(400, "Message content must be a string or a list of parts.", param=f"messages[{i}]")
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": part.get("text", "")})
            elif kind == "image_url" and images:
                parts.append({"type": "image_url", "image_url": part.get("image_url")})
            else:
                raise self.unsupported(f"messages[{i}].content", f"content parts of type '{kind}'")
        return parts

    def _assistant(self, m: dict[str, Any], i: int) -> dict[str, Any]:
        out: dict[str, Any] = {"role": "assistant"}
        content = self._content(m.get("content"), i, images=False)
        calls = m.get("tool_calls")
        if calls:
            out["tool_calls"] = [
                {"id": c.get("id"), "type": "function", "function": c.get("function")}
                for c in calls
                if isinstance(c, dict)
            ]
            # OpenAI's text beside tool calls is what Cohere calls the tool plan.
            text = content if isinstance(content, str) else "".join(p["text"] for p in content if p["type"] == "text")
            if text:
                out["tool_plan"] = text
        else:
            out["content"] = content
        return out

    def _tools(self, tools: Any, choice: Any) -> dict[str, Any]:
        out_tools = []
        strict = False
        for t in tools if isinstance(tools, list) else ():
            if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(t.get("function"), dict):
                raise self.unsupported("tools", "only function tools are supported")
            fn = t["function"]
            strict = strict or fn.get("strict") is True
            out_tools.append({"type": "function", "function": {k: v for k, v in fn.items() if k != "strict"}})
        out: dict[str, Any] = {"tools": out_tools}
        if strict:
            out["strict_tools"] = True
        if choice == "required":
            out["tool_choice"] = "REQUIRED"
        elif choice == "none":
            out["tool_choice"] = "NONE"
        elif isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            chosen = [t for t in out_tools if t["function"].get("name") == name]
            if not chosen:
                raise GatewayError(400, f"tool_choice names an unknown function '{name}'.", param="tool_choice")
            out["tools"], out["tool_choice"] = chosen, "REQUIRED"
        elif choice not in (None, "auto"):
            raise self.unsupported("tool_choice")
        return out

    def _response_format(self, fmt: Any) -> dict[str, Any] | None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind == "text":
            return None
        if kind == "json_object":
            schema = fmt.get("schema")
            return {"type": "json_object", "json_schema": schema} if schema else {"type": "json_object"}
        if kind == "json_schema" and isinstance(fmt.get("json_schema"), dict):
            return {"type": "json_object", "json_schema": fmt["json_schema"].get("schema") or {}}
        raise self.unsupported("response_format", f"type '{kind}'")

    def _embed_body(self, body: dict[str, Any], target: Target, ctx: CallContext) -> dict[str, Any]:
        inp = body.get("input")
        texts = [inp] if isinstance(inp, str) else inp
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise self.unsupported("input", "Cohere embeds text, not token ids")
        ctx.reply = _BASE64 if body.get("encoding_format") == "base64" else _FLOATS
        out: dict[str, Any] = {
            "model": target.upstream_model,
            "texts": texts,
            "input_type": body.get("input_type") or "search_document",
            "embedding_types": ["float"],
        }
        if body.get("dimensions") is not None:
            out["output_dimension"] = body["dimensions"]
        if body.get("truncate") is not None:
            out["truncate"] = body["truncate"]
        known = {"model", "input", "input_type", "encoding_format", "dimensions", "truncate", "user"}
        for key in body:
            if key not in known:
                raise self.unsupported(key)
        return out

    # -- responses ---------------------------------------------------------------------------
    def parse_response(self, endpoint: str, payload: bytes, ctx: CallContext) -> dict[str, Any]:
        obj = load_json(payload, self)
        if not isinstance(obj, dict):
            raise self.bad_response("not a JSON object")
        if endpoint == EMBEDDINGS:
            return self._embeddings(obj, ctx)
        message = obj.get("message")
        if not isinstance(message, dict):
            raise self.bad_response("no 'message' object")
        finish = self._finish(obj.get("finish_reason"), obj.get("error"))
        text, reasoning = _texts(message.get("content"))
        usage = cohere_usage(obj.get("usage"))
        if endpoint == COMPLETIONS:
            choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
            return _envelope(obj, ctx, "text_completion", choice, usage)
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
            "finish_reason": finish,
        }
        return _envelope(obj, ctx, "chat.completion", choice, usage)

    def _finish(self, reason: Any, error: Any = None) -> str:
        if reason in _FAILED:
            detail = f": {error}" if error else ""
            raise GatewayError(
                502,
                f"{self.name}: the upstream stopped with finish_reason {reason}{detail}",
                code="upstream_error",
                reason="finish_error",
            )
        return FINISH_REASONS.get(reason, "stop")

    def _embeddings(self, obj: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        emb = obj.get("embeddings")
        vectors = emb.get("float") if isinstance(emb, dict) else emb
        if not isinstance(vectors, list):
            raise self.bad_response("no float embeddings")
        b64 = (ctx.reply or _FLOATS).base64
        data = [{"object": "embedding", "index": i, "embedding": _b64(v) if b64 else v} for i, v in enumerate(vectors)]
        billed = ((obj.get("meta") or {}).get("billed_units") or {}).get("input_tokens") or 0
        tokens = int(billed)
        return {
            "object": "list",
            "data": data,
            "model": ctx.client_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def stream_translator(self, endpoint: str, ctx: CallContext) -> StreamTranslator:
        return CohereStream(self, ctx, completions=endpoint == COMPLETIONS)

    def parse_error(self, status: int, payload: bytes) -> GatewayError:
        err: Any = None
        try:
            err = orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            message = err["message"]
        else:
            message = payload[:200].decode("utf-8", "replace").strip() or f"HTTP {status}"
        return self.upstream_error(status, message, _STATUS_TYPES.get(status))


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
        try:
            obj = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise self.adapter.bad_response("malformed stream event") from None
        if not isinstance(obj, dict):
            raise self.adapter.bad_response("malformed stream event")
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
        finish = self.adapter._finish(delta.get("finish_reason"), delta.get("error"))
        self.usage = cohere_usage(delta.get("usage"))
        self.finished = True
        out = [self._chunk({}, finish=finish)]
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
        if self.completions:
            obj: dict[str, Any] = {
                "id": self.chunk_id,
                "object": "text_completion",
                "created": self.ctx.created,
                "model": self.ctx.client_model,
                "choices": choices,
            }
            if self.ctx.include_usage:
                obj["usage"] = usage
        else:
            obj = chat_chunk(self.ctx, self.chunk_id, choices, usage)
        return orjson.dumps(obj)


_HANDLERS: dict[str, Callable[[CohereStream, dict[str, Any], dict[str, Any], dict[str, Any]], list[bytes]]] = {
    "message-start": CohereStream._start,
    "content-delta": CohereStream._content,
    "tool-plan-delta": CohereStream._plan,
    "tool-call-start": CohereStream._tool_start,
    "tool-call-delta": CohereStream._tool_delta,
    "message-end": CohereStream._end,
}


# -- helpers ---------------------------------------------------------------------------------


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


def _b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
