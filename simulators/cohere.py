"""The simulated upstream in Cohere's v2 dialect: ``POST /v2/chat`` (streamed or not) and ``/v2/embed``.

Written from Cohere's API reference (https://docs.cohere.com/reference/chat,
https://docs.cohere.com/reference/chat-stream, https://docs.cohere.com/reference/embed), not
from the adapter, so the adapter is checked against the documented shapes:

- like Cohere, a request field the API does not define is a 400 ``{"id", "message"}``, so an
  OpenAI-only field leaking through the adapter fails loudly;
- replies come from the shared ``Simulator`` (the last user text echoed, cut by ``max_tokens`` or
  ``stop_sequences``); ``usage.tokens.input_tokens`` is ``billed_units`` plus ``PREAMBLE_TOKENS``,
  as Cohere's own system preamble makes it in the documented examples;
- with ``tools`` and a user turn last (and ``tool_choice`` not ``NONE``), the reply is a call to the
  tool the user text names, else the first, with arguments valid for its schema
  (``simulators/play.py``); after a tool turn it answers with the tool output; with a
  ``response_format`` of ``json_object`` it answers JSON (valid for its ``json_schema`` when given);
- streams are ``event: <type>`` / ``data: <json>`` pairs ending with ``message-end`` (no ``[DONE]``).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import orjson

from gateway.wire.asgi import Scope, Send, send_json
from simulators import play
from simulators.bounds import MockError, check_embedding
from simulators.model import count_tokens, embed

if TYPE_CHECKING:
    from simulators.server import MockUpstream

PREAMBLE_TOKENS = 7
DEFAULT_DIMENSIONS = 1536

CHAT_FIELDS = {
    "stream",
    "model",
    "messages",
    "reasoning_effort",
    "tools",
    "strict_tools",
    "documents",
    "citation_options",
    "response_format",
    "safety_mode",
    "max_tokens",
    "stop_sequences",
    "temperature",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "k",
    "p",
    "logprobs",
    "tool_choice",
    "thinking",
    "priority",
}
EMBED_FIELDS = {
    "texts",
    "images",
    "model",
    "input_type",
    "inputs",
    "max_tokens",
    "output_dimension",
    "embedding_types",
    "truncate",
    "priority",
}
ROLES = {"system", "user", "assistant", "tool"}


async def handle(up: MockUpstream, scope: Scope, body: dict[str, Any], send: Send) -> None:
    path = scope["path"]
    if scope["method"] != "POST" or path not in ("/v2/chat", "/v2/embed"):
        return await _error(send, 404, f"{scope['method']} {path} not found")
    problem = _check(body, CHAT_FIELDS if path == "/v2/chat" else EMBED_FIELDS)
    if problem:
        return await _error(send, 400, problem)
    if path == "/v2/embed":
        try:
            return await send_json(send, 200, orjson.dumps(_embed(body)), "mock")
        except MockError as e:  # a size beyond the simulator's bounds
            return await _error(send, 400, e.message)
    reply = _reply(up, body)
    if body.get("stream") is True:
        return await _stream(send, _events(reply), up.chunk_delay)
    await send_json(send, 200, orjson.dumps(_response(reply)), "mock")


def _check(body: dict[str, Any], fields: set[str]) -> str | None:
    unknown = sorted(set(body) - fields)
    if unknown:
        return f"invalid request: unknown field: parameter '{unknown[0]}' is not a valid field"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "invalid request: model must be specified"
    if fields is EMBED_FIELDS:
        return None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "invalid request: messages must be a non-empty list"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            return f"invalid request: messages[{i}].role must be one of {sorted(ROLES)}"
        if m["role"] == "tool" and not m.get("tool_call_id"):
            return f"invalid request: messages[{i}].tool_call_id is required"
    return None


async def _error(send: Send, status: int, message: str) -> None:
    await send_json(send, status, orjson.dumps({"id": str(uuid.uuid4()), "message": message}), "mock")


# -- chat -------------------------------------------------------------------------------------


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else ()
    return " ".join(p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text")


def _reply(up: MockUpstream, body: dict[str, Any]) -> dict[str, Any]:
    """What the model says: text pieces or one tool call, the finish reason and the usage."""
    messages = body["messages"]
    prompt_tokens = sum(count_tokens(_text(m.get("content"))) for m in messages)
    last = messages[-1]
    tools = body.get("tools") or []
    reply: dict[str, Any] = {"id": str(uuid.uuid4()), "pieces": [], "tool_call": None, "plan": ""}
    specs = [play.Tool(t["function"]["name"], t["function"].get("parameters") or {}) for t in tools]
    tool = play.choose_tool(specs, _text(last.get("content")), eager=True)  # this upstream calls whenever it may
    if tool is not None and last["role"] == "user" and body.get("tool_choice") != "NONE":
        name = tool.name
        args = play.arguments(tool, _text(last.get("content")))
        reply["tool_call"] = {
            "id": f"{name}_{uuid.uuid4().hex[:12]}",
            "type": "function",
            "function": {"name": name, "arguments": orjson.dumps(args).decode()},
        }
        reply["plan"] = f"I will call {name}."
        reply["finish"] = "TOOL_CALL"
        completion = count_tokens(reply["plan"]) + 1
    else:
        source = _text(last.get("content")) if last["role"] == "tool" else _last_user(messages)
        stops = body.get("stop_sequences") or []
        openai_like = {"messages": [{"role": "user", "content": source}], "max_tokens": body.get("max_tokens")}
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_object":
            schema = {"type": "json_schema", "json_schema": {"schema": fmt.get("json_schema")}}
            openai_like["response_format"] = schema
        outs, _ = up.sim.chat({**openai_like, "stop": stops})
        pieces, finish = outs[0]
        reply["pieces"] = pieces
        stopped = finish == "stop" and any(s and s in source for s in stops)
        reply["finish"] = "MAX_TOKENS" if finish == "length" else "STOP_SEQUENCE" if stopped else "COMPLETE"
        completion = len(pieces)
    reply["logprobs"] = body.get("logprobs") is True
    reply["usage"] = {
        "billed_units": {"input_tokens": prompt_tokens, "output_tokens": completion},
        "tokens": {"input_tokens": prompt_tokens + PREAMBLE_TOKENS, "output_tokens": completion},
    }
    return reply


def _last_user(messages: list[dict[str, Any]]) -> str:
    return next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")


def _logprob(piece: str, i: int) -> dict[str, Any]:
    return {"text": piece, "token_ids": [1000 + i], "logprobs": [-0.01]}


def _response(reply: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    if reply["tool_call"]:
        message["tool_plan"] = reply["plan"]
        message["tool_calls"] = [reply["tool_call"]]
    else:
        message["content"] = [{"type": "text", "text": "".join(reply["pieces"])}]
    out: dict[str, Any] = {
        "id": reply["id"],
        "message": message,
        "finish_reason": reply["finish"],
        "usage": reply["usage"],
    }
    if reply["logprobs"]:
        out["logprobs"] = [_logprob(p, i) for i, p in enumerate(reply["pieces"])]
    return out


def _events(reply: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message-start", {"id": reply["id"], "delta": {"message": start}}),
    ]
    call = reply["tool_call"]
    if call:
        for word in reply["plan"].split(" "):
            events.append(("tool-plan-delta", {"delta": {"message": {"tool_plan": word + " "}}}))
        head = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
        events.append(("tool-call-start", {"index": 0, "delta": {"message": {"tool_calls": head}}}))
        args = call["function"]["arguments"]
        for piece in (args[: len(args) // 2], args[len(args) // 2 :]):
            events.append(
                (
                    "tool-call-delta",
                    {"index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": piece}}}}},
                )
            )
        events.append(("tool-call-end", {"index": 0}))
    else:
        events.append(("content-start", {"index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}))
        for i, piece in enumerate(reply["pieces"]):
            ev: dict[str, Any] = {"index": 0, "delta": {"message": {"content": {"text": piece}}}}
            if reply["logprobs"]:
                ev["logprobs"] = _logprob(piece, i)
            events.append(("content-delta", ev))
        events.append(("content-end", {"index": 0}))
    events.append(("message-end", {"delta": {"finish_reason": reply["finish"], "usage": reply["usage"]}}))
    return events


async def _stream(send: Send, events: list[tuple[str, dict[str, Any]]], delay: float) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for name, data in events:
        if delay:
            await asyncio.sleep(delay)
        frame = b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"
        await send({"type": "http.response.body", "body": frame, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


# -- embed ------------------------------------------------------------------------------------


def _embed(body: dict[str, Any]) -> dict[str, Any]:
    texts = body.get("texts") or []
    dims = check_embedding(len(texts), body.get("output_dimension") or DEFAULT_DIMENSIONS)
    types = body.get("embedding_types") or ["float"]
    vectors = [embed(t, dims) for t in texts]
    return {
        "id": str(uuid.uuid4()),
        "embeddings": {t: vectors for t in types if t == "float"},
        "texts": texts,
        "meta": {
            "api_version": {"version": "2"},
            "billed_units": {"input_tokens": sum(max(count_tokens(t), 1) for t in texts)},
        },
        "response_type": "embeddings_by_type",
    }
