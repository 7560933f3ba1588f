"""A simulated Anthropic Messages API (``switchyard mock-upstream --dialect anthropic``).

Written from Anthropic's documentation, not from ``providers/anthropic/``, so the adapter is
tested against the documented shapes rather than against itself:
https://platform.claude.com/docs/en/api/messages (request rules, the Message object),
https://platform.claude.com/docs/en/build-with-claude/streaming (the event sequence),
https://platform.claude.com/docs/en/api/errors (``{"type": "error", "error": {type, message}}``).

The model echoes the text of the last user turn word by word (or a fixed greeting), cut by
``max_tokens`` (at most ``MAX_OUTPUT_WORDS``) or at a stop sequence. With ``tools`` it calls the tool
that ``tool_choice`` (``any``/``tool``) forces or, unless ``tool_choice`` is ``none``, the one the
last user text names as a word, except right after a ``tool_result`` (then it answers in text, the
result echoed); with ``output_config.format`` it answers JSON. Both fill the schema with sample
values. ``POST /v1/messages/count_tokens`` counts ``input_tokens`` as a Message's usage does: the
words of the system prompt, the messages and the tool definitions (as JSON). Two markers in the last user text simulate failures: ``[[overloaded]]`` answers HTTP 529,
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
from simulators.sampling import STRING_FILL_WORDS, count_words, head_text, json_words, mentions, sample_schema

if TYPE_CHECKING:
    from simulators.server import MockUpstream

GREETING = "Hello from the Switchyard mock Claude."
STALL = 0.2  # seconds before a simulated mid-stream error
MAX_OUTPUT_WORDS = 4096  # the most words one answer echoes, whatever max_tokens says
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
# What count_tokens takes: a Messages request without max_tokens and the sampling fields.
COUNT_FIELDS = {
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "mcp_servers",
    "context_management",
    "cache_control",
    "speed",
}


def _error(kind: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock"})


def _problem(headers: dict[bytes, bytes], body: dict[str, Any], count: bool = False) -> tuple[int, str, str] | None:
    """The documented request checks: status, error type and message of the first one that fails
    (``count``: for count_tokens, which takes no ``max_tokens``)."""
    if not headers.get(b"x-api-key"):
        return 401, "authentication_error", "x-api-key header is required"
    if not headers.get(b"anthropic-version"):
        return 400, "invalid_request_error", "anthropic-version: header is required"
    extra = sorted(set(body) - (COUNT_FIELDS if count else KNOWN_FIELDS))
    if extra:
        return 400, "invalid_request_error", f"{extra[0]}: Extra inputs are not permitted"
    if not isinstance(body.get("model"), str):
        return 400, "invalid_request_error", "model: Field required"
    mt = body.get("max_tokens")
    if not count and (not isinstance(mt, int) or isinstance(mt, bool) or mt < 1):
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


def _texts(content: Any) -> list[str]:
    """The texts of a content value, block by block: a string, or text and tool_result blocks."""
    if isinstance(content, str):
        return [content] if content else []
    parts: list[str] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_result":
            parts.extend(_texts(block.get("content", "")))
    return [p for p in parts if p]


def _after_tool_result(content: Any) -> bool:
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)


def input_tokens(body: dict[str, Any]) -> int:
    """Words of the system prompt, of the messages' texts and of the tool definitions as JSON."""
    n = sum(count_words(t) for t in _texts(body.get("system")))
    n += sum(count_words(t) for m in body["messages"] for t in _texts(m.get("content")))
    tools = body.get("tools")
    return n + (json_words(tools) if isinstance(tools, list) else 0)


def _tool(body: dict[str, Any], last: dict[str, Any], user: list[str]) -> dict[str, Any] | None:
    """The client tool to call: forced by ``tool_choice`` (``tool``, ``any``), else named in the last
    user text (not right after a tool_result); ``none`` calls nothing."""
    tools = [
        t
        for t in body.get("tools") or []
        if isinstance(t, dict) and isinstance(t.get("name"), str) and t.get("type") in (None, "custom")
    ]
    choice = body.get("tool_choice") if isinstance(body.get("tool_choice"), dict) else {}
    kind = choice.get("type") or "auto"
    if not tools or kind == "none":
        return None
    if kind == "tool":
        return next((t for t in tools if t["name"] == choice.get("name")), tools[0])
    if not _after_tool_result(last.get("content")):
        hits = [(at, k) for k, t in enumerate(tools) if (at := mentions(t["name"], user)) is not None]
        if hits:
            return tools[min(hits)[1]]
    return tools[0] if kind == "any" else None


def _answer(up: MockUpstream, body: dict[str, Any]) -> dict[str, Any]:
    """The Message object for a valid request."""
    msgs = body["messages"]
    last = next((m for m in reversed(msgs) if m["role"] == "user"), {})
    user = _texts(last.get("content"))
    limit = min(body["max_tokens"], MAX_OUTPUT_WORDS)
    usage = {"input_tokens": input_tokens(body), "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    fmt = (body.get("output_config") or {}).get("format") or {}
    fill = head_text(user, STRING_FILL_WORDS)
    stop_sequence = None
    tool = _tool(body, last, user)
    if tool is not None:
        tool_input = sample_schema(tool.get("input_schema"), fill) or {}
        block = {"type": "tool_use", "id": "toolu_mock" + _digest(body), "name": tool["name"], "input": tool_input}
        content, stop_reason = [block], "tool_use"
        usage["output_tokens"] = len(orjson.dumps(tool_input).split()) or 1
    else:
        if fmt.get("type") == "json_schema":
            pieces = _WORD.findall(orjson.dumps(sample_schema(fmt.get("schema"), fill)).decode())
        else:
            pieces = _pieces(head_text(user, limit + 1) or GREETING, up.sim.chunks)
        pieces, stop_reason, stop_sequence = _cut(pieces, body, limit)
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


def _cut(pieces: list[str], body: dict[str, Any], limit: int) -> tuple[list[str], str, str | None]:
    """Apply stop_sequences, then max_tokens (``limit`` words: one word is one token here)."""
    text = "".join(pieces)
    hits = [(text.find(s), s) for s in body.get("stop_sequences") or [] if s and s in text]
    if hits:
        at, seq = min(hits)
        return _WORD.findall(text[:at]) or ([text[:at]] if text[:at] else []), "stop_sequence", seq
    if len(pieces) > limit:
        return pieces[:limit], "max_tokens", None
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
    count = scope["path"] == "/v1/messages/count_tokens"
    if scope["path"] not in ("/v1/messages", "/v1/messages/count_tokens") or scope["method"] != "POST":
        err = _error("not_found_error", f"Not found: {scope['method']} {scope['path']}")
        return await send_json(send, 404, err, "req_mock")
    problem = _problem(dict(scope["headers"]), body, count)
    if problem is not None:
        status, kind, message = problem
        return await send_json(send, status, _error(kind, message), "req_mock")
    if count:
        return await send_json(send, 200, orjson.dumps({"input_tokens": input_tokens(body)}), "req_mock")
    msg = _answer(up, body)
    last = _texts(next((m.get("content") for m in reversed(body["messages"]) if m["role"] == "user"), ""))
    if any("[[overloaded]]" in t for t in last):
        return await send_json(send, 529, _error("overloaded_error", "Overloaded"), "req_mock")
    if body.get("stream") is True:
        fail = any("[[stream-error]]" in t for t in last)
        return await _sse(send, _stream_events(msg, fail), up.chunk_delay, STALL if fail else 0.0)
    await send_json(send, 200, orjson.dumps(msg), "req_mock")
