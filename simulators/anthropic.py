"""A simulated Anthropic Messages API (``switchyard mock-upstream --dialect anthropic``).

Written from Anthropic's documentation, not from ``providers/anthropic/``, so the adapter is
tested against the documented shapes rather than against itself:
https://platform.claude.com/docs/en/api/messages (request rules, the Message object),
https://platform.claude.com/docs/en/build-with-claude/streaming (the event sequence),
https://platform.claude.com/docs/en/api/errors (``{"type": "error", "error": {type, message}}``).

The model echoes the text of the last user turn word by word (or a fixed greeting), cut by
``max_tokens`` or at a stop sequence. With ``tools`` and a ``tool_choice`` of ``any``/``tool`` it
calls the tool; with ``output_config.format`` it answers JSON. Both fill the schema with sample
values. Two markers in the last user text simulate failures: ``[[overloaded]]`` answers HTTP 529,
``[[stream-error]]`` sends an ``overloaded_error`` event after the first text delta, a moment
later (``STALL``), so a relay has committed the stream by then, as with a real overload.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import TYPE_CHECKING, Any

import orjson

from gateway.wire.asgi import Scope, Send, send_json

if TYPE_CHECKING:
    from simulators.server import MockUpstream

GREETING = "Hello from the Switchyard mock Claude."
STALL = 0.2  # seconds before a simulated mid-stream error
FILLER = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit"]
_WORD = re.compile(r"\S+\s*")
# The Messages API refuses fields it does not know ("Extra inputs are not permitted").
KNOWN_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_k",
    "top_p",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "output_config",
    "container",
    "mcp_servers",
    "context_management",
}


def _error(kind: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock"})


def _problem(headers: dict[bytes, bytes], body: dict[str, Any]) -> tuple[int, str, str] | None:
    """The documented request checks: status, error type and message of the first one that fails."""
    if not headers.get(b"x-api-key"):
        return 401, "authentication_error", "x-api-key header is required"
    if not headers.get(b"anthropic-version"):
        return 400, "invalid_request_error", "anthropic-version: header is required"
    extra = sorted(set(body) - KNOWN_FIELDS)
    if extra:
        return 400, "invalid_request_error", f"{extra[0]}: Extra inputs are not permitted"
    if not isinstance(body.get("model"), str):
        return 400, "invalid_request_error", "model: Field required"
    mt = body.get("max_tokens")
    if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
        return 400, "invalid_request_error", "max_tokens: Field required (an integer >= 1)"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return 400, "invalid_request_error", "messages: at least one message is required"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            return 400, "invalid_request_error", f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if i and msgs[i - 1].get("role") == m["role"]:
            return 400, "invalid_request_error", f"messages.{i}: roles must alternate between user and assistant"
    t = body.get("temperature")
    if t is not None and not 0 <= t <= 1:
        return 400, "invalid_request_error", "temperature: Input should be less than or equal to 1"
    return None


def _text(content: Any) -> str:
    """The words of a content value: a string, or text, tool_result and image blocks."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_result":
            parts.append(_text(block.get("content", "")))
    return " ".join(p for p in parts if p)


def _sample(schema: Any, text: str) -> Any:
    """A value that fits a JSON schema, strings filled with ``text``."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {k: _sample(v, text) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_sample(schema.get("items"), text)]
    return {"string": text, "integer": 1, "number": 1.5, "boolean": True}.get(kind)


def _answer(up: MockUpstream, body: dict[str, Any]) -> dict[str, Any]:
    """The Message object for a valid request."""
    msgs = body["messages"]
    last_user = next((_text(m.get("content")) for m in reversed(msgs) if m["role"] == "user"), "")
    words = sum(len(_text(m.get("content")).split()) for m in msgs) + len(_text(body.get("system")).split())
    usage = {"input_tokens": words, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    choice = body.get("tool_choice") or {}
    tools = body.get("tools") or []
    fmt = (body.get("output_config") or {}).get("format") or {}
    stop_sequence = None
    if tools and choice.get("type") in ("any", "tool"):
        name = choice.get("name") or tools[0]["name"]
        tool = next((t for t in tools if t.get("name") == name), tools[0])
        tool_input = _sample(tool.get("input_schema"), last_user) or {}
        block = {"type": "tool_use", "id": "toolu_mock" + _digest(body), "name": name, "input": tool_input}
        content, stop_reason = [block], "tool_use"
        usage["output_tokens"] = len(orjson.dumps(tool_input).split()) or 1
    else:
        if fmt.get("type") == "json_schema":
            pieces = _WORD.findall(orjson.dumps(_sample(fmt.get("schema"), last_user)).decode())
        else:
            pieces = _pieces(last_user or GREETING, up.sim.chunks)
        pieces, stop_reason, stop_sequence = _cut(pieces, body)
        content = [{"type": "text", "text": "".join(pieces)}]
        usage["output_tokens"] = len(pieces)
    return {
        "id": "msg_mock" + _digest(body),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage,
    }


def _pieces(text: str, chunks: int | None) -> list[str]:
    pieces = _WORD.findall(text)
    if chunks is not None:
        i = 0
        while len(pieces) < chunks:
            if pieces and not pieces[-1].endswith(" "):
                pieces[-1] += " "
            pieces.append(FILLER[i % len(FILLER)] + " ")
            i += 1
        pieces = pieces[:chunks]
    return pieces


def _cut(pieces: list[str], body: dict[str, Any]) -> tuple[list[str], str, str | None]:
    """Apply stop_sequences, then max_tokens (one word is one token here)."""
    text = "".join(pieces)
    hits = [(text.find(s), s) for s in body.get("stop_sequences") or [] if s and s in text]
    if hits:
        at, seq = min(hits)
        return _WORD.findall(text[:at]) or ([text[:at]] if text[:at] else []), "stop_sequence", seq
    if len(pieces) > body["max_tokens"]:
        return pieces[: body["max_tokens"]], "max_tokens", None
    return pieces, "end_turn", None


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha1(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:20]


def _event(data: dict[str, Any]) -> bytes:
    return b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _stream_events(msg: dict[str, Any], fail: bool) -> list[bytes]:
    """The documented sequence: message_start, per block start/ping/deltas/stop, message_delta, message_stop."""
    start = {**msg, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**msg["usage"], "output_tokens": 1}
    events = [_event({"type": "message_start", "message": start})]
    for index, block in enumerate(msg["content"]):
        if block["type"] == "text":
            events.append(
                _event({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
            )
            events.append(_event({"type": "ping"}))
            for piece in _WORD.findall(block["text"]) or [block["text"]]:
                delta = {"type": "text_delta", "text": piece}
                events.append(_event({"type": "content_block_delta", "index": index, "delta": delta}))
                if fail:
                    err = {"type": "overloaded_error", "message": "Overloaded"}
                    return [*events, _event({"type": "error", "error": err})]
        else:
            head = {**block, "input": {}}
            events.append(_event({"type": "content_block_start", "index": index, "content_block": head}))
            raw = orjson.dumps(block["input"]).decode()
            step = max(1, len(raw) // 3)
            for part in ["", *(raw[i : i + step] for i in range(0, len(raw), step))]:
                delta = {"type": "input_json_delta", "partial_json": part}
                events.append(_event({"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(_event({"type": "content_block_stop", "index": index}))
    delta = {"stop_reason": msg["stop_reason"], "stop_sequence": msg["stop_sequence"]}
    events.append(
        _event({"type": "message_delta", "delta": delta, "usage": {"output_tokens": msg["usage"]["output_tokens"]}})
    )
    events.append(_event({"type": "message_stop"}))
    return events


async def _sse(send: Send, events: list[bytes], delay: float, stall: float) -> None:
    """Each event in its own write, ``delay`` apart; ``stall`` before the last one."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for i, event in enumerate(events):
        pause = stall if stall and i == len(events) - 1 else delay
        if pause:
            await asyncio.sleep(pause)
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def handle(up: MockUpstream, scope: Scope, body: dict[str, Any], send: Send) -> None:
    if scope["path"] != "/v1/messages" or scope["method"] != "POST":
        err = _error("not_found_error", f"Not found: {scope['method']} {scope['path']}")
        return await send_json(send, 404, err, "req_mock")
    problem = _problem(dict(scope["headers"]), body)
    if problem is not None:
        status, kind, message = problem
        return await send_json(send, status, _error(kind, message), "req_mock")
    msg = _answer(up, body)
    last = _text(next((m.get("content") for m in reversed(body["messages"]) if m["role"] == "user"), ""))
    if "[[overloaded]]" in last:
        return await send_json(send, 529, _error("overloaded_error", "Overloaded"), "req_mock")
    if body.get("stream") is True:
        fail = "[[stream-error]]" in last
        return await _sse(send, _stream_events(msg, fail), up.chunk_delay, STALL if fail else 0.0)
    await send_json(send, 200, orjson.dumps(msg), "req_mock")
