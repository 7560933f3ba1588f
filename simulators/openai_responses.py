"""OpenAI's Responses API, simulated for ``mock-upstream --dialect openai``.

Written from OpenAI's API reference (https://platform.openai.com/docs/api-reference/responses:
the Response object, the streaming events, input items), not from the gateway's translators.

Routes: ``POST /v1/responses``, ``GET``/``DELETE /v1/responses/{id}``,
``GET /v1/responses/{id}/input_items``, ``POST /v1/responses/{id}/cancel`` and
``POST /v1/responses/input_tokens``.

The model follows ``simulators.model``: tokens are whitespace-separated words and the answer echoes
the last user text, cut at ``max_output_tokens`` (status ``incomplete``). With function tools it
calls the tool the last user text names (or the one ``tool_choice`` forces), with arguments sampled
from the tool's JSON schema; after a ``function_call_output`` it answers ``tool said: <output>``.

Every size is bounded: at most ``MAX_OUTPUT_WORDS`` words are generated and only that many are read
from the input to make them; words are counted in fixed-size windows (``simulators.sampling``), and
nothing the size of the input is copied; the store keeps at most ``MAX_STORED`` responses and about
``MAX_STORED_BYTES`` of their JSON, dropping the oldest.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from gateway.wire.asgi import Scope, Send, send_json
from simulators.model import _Budget, _generate
from simulators.sampling import STRING_FILL_WORDS, count_words, head_text, json_words, mentions, sample_schema

if TYPE_CHECKING:
    from simulators.server import MockUpstream

MAX_OUTPUT_WORDS = 4096  # the most words one response generates, whatever max_output_tokens says
MAX_STORED = 1000  # stored responses kept (store: true), oldest dropped first
MAX_STORED_BYTES = 256 << 20  # and the JSON they hold, the newest always kept
_ROLES = ("user", "assistant", "system", "developer")
_TEXT_PARTS = ("input_text", "output_text", "text")

# Fields the Response object echoes from the request, with the value OpenAI reports when omitted.
ECHOED: dict[str, Any] = {
    "background": False,
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "prompt_cache_key": None,
    "prompt_cache_retention": None,
    "safety_identifier": None,
    "service_tier": "default",
    "store": True,
    "temperature": 1.0,
    "tool_choice": "auto",
    "top_logprobs": 0,
    "top_p": 1.0,
    "truncation": "disabled",
    "user": None,
}
ECHOED_IF_SENT = ("prompt", "prompt_cache_options", "context_management", "moderation", "image")


# -- the store ------------------------------------------------------------------------------
def json_size(value: Any) -> int:
    """About how many bytes ``value`` takes as JSON, walked without serializing it (no copy made)."""
    n, stack = 0, [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            n += len(v) + 2
        elif isinstance(v, dict):
            n += 2 + 2 * len(v)
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            n += 2 + len(v)
            stack.extend(v)
        else:
            n += 8
    return n


@dataclass(slots=True)
class Stored:
    response: dict[str, Any]  # the Response object, never changed once stored
    items: list[dict[str, Any]]  # its input items, with ids
    previous: str | None
    size: int = 0  # json_size of both, for the store's byte budget


class ResponsesStore:
    """Responses created with ``store: true``, oldest dropped past ``max_items`` or ``max_bytes`` (of JSON,
    estimated; the newest response is always kept). Items keep the request's own strings: nothing is copied."""

    def __init__(self, max_items: int = MAX_STORED, max_bytes: int = MAX_STORED_BYTES) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.size = 0
        self._data: OrderedDict[str, Stored] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, rid: str) -> Stored | None:
        return self._data.get(rid)

    def put(self, rid: str, stored: Stored) -> None:
        stored.size = json_size(stored.response) + json_size(stored.items)
        self.delete(rid)
        self._data[rid] = stored
        self.size += stored.size
        while len(self._data) > 1 and (len(self._data) > self.max_items or self.size > self.max_bytes):
            _, old = self._data.popitem(last=False)
            self.size -= old.size

    def delete(self, rid: str) -> bool:
        old = self._data.pop(rid, None)
        if old is not None:
            self.size -= old.size
        return old is not None

    def conversation(self, rid: str) -> list[dict[str, Any]]:
        """The input and output items of ``rid`` and the responses before it, oldest first."""
        turns: list[list[dict[str, Any]]] = []
        seen: set[str] = set()
        cur: str | None = rid
        while cur is not None and cur not in seen and (stored := self._data.get(cur)) is not None:
            seen.add(cur)
            turns.append(stored.items + stored.response["output"])
            cur = stored.previous
        return [item for turn in reversed(turns) for item in turn]


# -- requests -------------------------------------------------------------------------------
class Problem(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def _id(prefix: str, nbytes: int = 24) -> str:
    return prefix + os.urandom(nbytes).hex()


def _texts(content: Any) -> list[str]:
    """The text of a message's content (a string or input_text/output_text parts), part by part."""
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    for part in content if isinstance(content, list) else []:
        if isinstance(part, dict) and part.get("type") in _TEXT_PARTS and isinstance(part.get("text"), str):
            out.append(part["text"])
        elif isinstance(part, dict) and part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
            out.append(part["refusal"])
    return out


def _item_texts(item: dict[str, Any]) -> list[str]:
    kind = item.get("type")
    if kind == "message":
        return _texts(item.get("content"))
    if kind == "function_call":
        return [str(item.get("arguments", ""))]
    if kind == "function_call_output":
        return _texts(item.get("output"))
    return []


def normalize_input(inp: Any) -> list[dict[str, Any]]:
    """The request's ``input`` as the items ``input_items`` lists: every item with an id and status."""
    if inp is None:
        return []
    if isinstance(inp, str):
        inp = [{"role": "user", "content": inp}]
    if not isinstance(inp, list):
        raise Problem(400, "Invalid type for 'input': expected a string or an array of items.", "input", "invalid_type")
    items: list[dict[str, Any]] = []
    for i, raw in enumerate(inp):
        if not isinstance(raw, dict):
            raise Problem(400, f"Invalid type for 'input[{i}]': expected an object.", f"input[{i}]", "invalid_type")
        kind = raw.get("type") or ("message" if "role" in raw else None)
        if kind == "message":
            role = raw.get("role")
            if role not in _ROLES:
                message = (
                    f"Invalid value: '{role}'. Supported values are: 'assistant', 'system', 'developer', and 'user'."
                )
                raise Problem(400, message, f"input[{i}].role", "invalid_value")
            content = raw.get("content")
            part_type = "output_text" if role == "assistant" else "input_text"
            if isinstance(content, str):
                content = [{"type": part_type, "text": content}]
            elif isinstance(content, list):
                content = [
                    {**p, "annotations": p.get("annotations") or []}
                    if isinstance(p, dict) and p.get("type") == "output_text"
                    else p
                    for p in content
                ]
            else:
                message = f"Invalid type for 'input[{i}].content': expected a string or an array of parts."
                raise Problem(400, message, f"input[{i}].content", "invalid_type")
            item = {"id": raw.get("id") or _id("msg_"), "type": "message", "role": role, "content": content}
            item["status"] = raw.get("status") or "completed"
        elif kind == "function_call":
            item = {**raw, "id": raw.get("id") or _id("fc_"), "status": raw.get("status") or "completed"}
        elif kind == "function_call_output":
            item = {**raw, "id": raw.get("id") or _id("fco_"), "status": raw.get("status") or "completed"}
        elif kind is None:
            raise Problem(400, f"Missing required parameter: 'input[{i}].type'.", f"input[{i}].type", "missing")
        else:
            item = {**raw, "id": raw.get("id") or _id("item_")}  # reasoning, item_reference, ...: kept as sent
        items.append(item)
    return items


def _function_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise Problem(400, "Invalid type for 'tools': expected an array of objects.", "tools", "invalid_type")
    return [t for t in tools if t.get("type") == "function" and isinstance(t.get("name"), str)]


def pick_tool(tools: list[dict[str, Any]], tool_choice: Any, texts: list[str]) -> dict[str, Any] | None:
    """The function tool to call: the one ``tool_choice`` forces, else the first one ``texts`` names,
    else (``required``) the first offered; ``none`` calls nothing."""
    allowed, required = tools, tool_choice == "required"
    if tool_choice == "none":
        return None
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        tool = next((t for t in tools if t["name"] == tool_choice.get("name")), None)
        if tool is None:
            raise Problem(400, "Tool choice 'function' not found in 'tools' parameter.", "tool_choice")
        return tool
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "allowed_tools":
        names = {t.get("name") for t in tool_choice.get("tools") or [] if isinstance(t, dict)}
        allowed = [t for t in tools if t["name"] in names]
        required = tool_choice.get("mode") == "required"
    hits = [(pos, k) for k, t in enumerate(allowed) if (pos := mentions(t["name"], texts)) is not None]
    if hits:
        return allowed[min(hits)[1]]
    return allowed[0] if required and allowed else None


def _last_user_texts(items: list[dict[str, Any]]) -> list[str]:
    for item in reversed(items):
        if item.get("type") == "message" and item.get("role") == "user":
            return _texts(item.get("content"))
    return []


def _limit(body: dict[str, Any]) -> int:
    mot = body.get("max_output_tokens")
    if mot is None:
        return MAX_OUTPUT_WORDS
    if not isinstance(mot, int) or isinstance(mot, bool):
        message = "Invalid type for 'max_output_tokens': expected an integer."
        raise Problem(400, message, "max_output_tokens", "invalid_type")
    if mot < 1:
        message = (
            f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 1, but got {mot} instead."
        )
        raise Problem(400, message, "max_output_tokens", "integer_below_min_value")
    return min(mot, MAX_OUTPUT_WORDS)


def _echo(body: dict[str, Any], tools: list[Any]) -> dict[str, Any]:
    """The request fields the Response object reports back."""
    out = {k: (default if body.get(k) is None else body[k]) for k, default in ECHOED.items()}
    if out["service_tier"] == "auto":
        out["service_tier"] = "default"
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    out["reasoning"] = {"effort": None, "summary": None, **reasoning}
    text = body.get("text") if isinstance(body.get("text"), dict) else {}
    out["text"] = {"format": {"type": "text"}, "verbosity": "medium", **text}
    out["tools"] = [{**t, "strict": True} if t.get("type") == "function" and "strict" not in t else t for t in tools]
    for k in ECHOED_IF_SENT:
        if body.get(k) is not None:
            out[k] = body[k]
    if isinstance(body.get("conversation"), str | dict):
        conv = body["conversation"]
        out["conversation"] = {"id": conv} if isinstance(conv, str) else conv
    return out


def _input_tokens(body: dict[str, Any], context: list[dict[str, Any]]) -> int:
    """Instructions, every text of the conversation and the tool definitions (as JSON), in words."""
    n = count_words(body["instructions"]) if isinstance(body.get("instructions"), str) else 0
    n += sum(count_words(t) for item in context for t in _item_texts(item))
    tools = body.get("tools")
    return n + (json_words(tools) if isinstance(tools, list) else 0)


@dataclass(slots=True)
class Answer:
    response: dict[str, Any]
    items: list[dict[str, Any]]  # the request's input items, with ids
    pieces: list[str]  # the deltas of the output (text words or argument fragments)


class ResponsesSimulator:
    """The Responses API over one ``ResponsesStore``; ``chunks`` fixes the number of text deltas."""

    def __init__(self, chunks: int | None = None, store: ResponsesStore | None = None) -> None:
        self.chunks = chunks
        self.store = store if store is not None else ResponsesStore()

    def context(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(the conversation the model sees, the request's own input items)."""
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise Problem(400, "Missing required parameter: 'model'.", "model", "missing_required_parameter")
        items = normalize_input(body.get("input"))
        prev = body.get("previous_response_id")
        if prev is None:
            return items, items
        if not isinstance(prev, str) or self.store.get(prev) is None:
            raise Problem(404, f"Previous response with id '{prev}' not found.", "previous_response_id")
        return self.store.conversation(prev) + items, items

    def create(self, body: dict[str, Any]) -> Answer:
        context, items = self.context(body)
        limit = _limit(body)
        tools = _function_tools(body)
        calls = {i.get("call_id") for i in context if i.get("type") == "function_call"}
        for item in items:
            if item.get("type") == "function_call_output" and item.get("call_id") not in calls:
                message = f"No tool call found for function call output with call_id {item.get('call_id')}."
                raise Problem(400, message, "input")
        last = context[-1] if context else {}
        user = _last_user_texts(context)
        tool = None
        if last.get("type") != "function_call_output" and tools:
            tool = pick_tool(tools, body.get("tool_choice"), user)
        now = int(time.time())
        status, incomplete = "completed", None
        if tool is not None:
            fill = head_text(user, STRING_FILL_WORDS).strip()
            arguments = orjson.dumps(sample_schema(tool.get("parameters") or {}, fill) or {}).decode()
            step = max(1, len(arguments) // 3)
            pieces = [arguments[i : i + step] for i in range(0, len(arguments), step)]
            item = {
                "id": _id("fc_"),
                "type": "function_call",
                "status": "completed",
                "arguments": arguments,
                "call_id": _id("call_", 12),
                "name": tool["name"],
            }
            output_tokens = max(count_words(arguments), 1)
        else:
            pieces, finish = self._text(body, last, user, limit)
            status = "completed" if finish != "length" else "incomplete"
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": "".join(pieces)}
            item = {"id": _id("msg_"), "type": "message", "status": status, "content": [part], "role": "assistant"}
            output_tokens = len(pieces)
            if status == "incomplete":
                incomplete = {"reason": "max_output_tokens"}
        input_tokens = _input_tokens(body, context)
        response = {
            "id": _id("resp_"),
            "object": "response",
            "created_at": now,
            "status": status,
            "completed_at": now if status == "completed" else None,
            "error": None,
            "incomplete_details": incomplete,
            "model": body["model"],
            "output": [item],
            **_echo(body, body.get("tools") or []),
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            },
        }
        if response["store"]:
            prev = body.get("previous_response_id")
            self.store.put(response["id"], Stored(response, items, prev))
        return Answer(response, items, pieces)

    def _text(self, body: dict[str, Any], last: dict[str, Any], user: list[str], limit: int) -> tuple[list[str], str]:
        """The words of a text answer and whether ``max_output_tokens`` cut it (``length``)."""
        fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
        fmt = fmt if isinstance(fmt, dict) else {}
        chunks: int | None = self.chunks
        if last.get("type") == "function_call_output":
            source = "tool said: " + head_text(_texts(last.get("output")), limit)
        elif fmt.get("type") == "json_schema":
            source = orjson.dumps(sample_schema(fmt.get("schema"), head_text(user, STRING_FILL_WORDS))).decode()
            chunks = None  # filler words would break the JSON
        elif fmt.get("type") == "json_object":
            source = orjson.dumps({"text": head_text(user, limit)}).decode()
            chunks = None
        else:
            source = head_text(user, limit + 1)
        return _generate(source, limit, [], chunks, _Budget())

    def count(self, body: dict[str, Any]) -> int:
        """``POST /v1/responses/input_tokens``: what ``usage.input_tokens`` would say."""
        context, _ = self.context(body)
        return _input_tokens(body, context)


# -- streaming ------------------------------------------------------------------------------
def stream_events(answer: Answer) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event type, payload without ``sequence_number``) in the order OpenAI sends them."""
    final = answer.response
    start = {**final, "status": "in_progress", "completed_at": None, "incomplete_details": None}
    start.update(output=[], usage=None)
    yield "response.created", {"response": start}
    yield "response.in_progress", {"response": start}
    for index, item in enumerate(final["output"]):
        ids = {"item_id": item["id"], "output_index": index}
        if item["type"] == "function_call":
            yield (
                "response.output_item.added",
                {"output_index": index, "item": {**item, "status": "in_progress", "arguments": ""}},
            )
            for piece in answer.pieces:
                yield "response.function_call_arguments.delta", {**ids, "delta": piece}
            yield "response.function_call_arguments.done", {**ids, "name": item["name"], "arguments": item["arguments"]}
        else:
            part = item["content"][0]
            yield (
                "response.output_item.added",
                {"output_index": index, "item": {**item, "status": "in_progress", "content": []}},
            )
            ids["content_index"] = 0
            yield "response.content_part.added", {**ids, "part": {**part, "text": ""}}
            for piece in answer.pieces:
                yield "response.output_text.delta", {**ids, "delta": piece, "logprobs": []}
            yield "response.output_text.done", {**ids, "text": part["text"], "logprobs": []}
            yield "response.content_part.done", {**ids, "part": part}
        yield "response.output_item.done", {"output_index": index, "item": item}
    yield ("response.completed" if final["status"] == "completed" else "response.incomplete"), {"response": final}


def sse_frames(answer: Answer) -> Iterator[bytes]:
    for seq, (kind, payload) in enumerate(stream_events(answer)):
        data = orjson.dumps({"type": kind, "sequence_number": seq, **payload})
        yield b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


# -- HTTP -----------------------------------------------------------------------------------
def _not_found(rid: str) -> Problem:
    return Problem(404, f"Response with id '{rid}' not found.")


def _input_items(store: ResponsesStore, rid: str, query: dict[str, list[str]]) -> dict[str, Any]:
    stored = store.get(rid)
    if stored is None:
        raise _not_found(rid)
    items = list(stored.items)
    order = (query.get("order") or ["desc"])[0]
    if order not in ("asc", "desc"):
        raise Problem(400, f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.", "order")
    if order == "desc":
        items.reverse()
    after = (query.get("after") or [None])[0]
    if after is not None:
        at = next((i for i, item in enumerate(items) if item.get("id") == after), None)
        items = items[at + 1 :] if at is not None else []
    try:
        limit = int((query.get("limit") or ["20"])[0])
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise Problem(400, "Invalid 'limit': expected an integer between 1 and 100.", "limit", "invalid_value")
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }


async def _sse(send: Send, frames: Iterable[bytes], delay: float) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for frame in frames:
        if delay:
            await asyncio.sleep(delay)
        await send({"type": "http.response.body", "body": frame, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def handle(up: MockUpstream, scope: Scope, body: dict[str, Any], send: Send) -> None:
    """``/v1/responses`` and below, for the openai dialect of ``MockUpstream``."""
    sim: ResponsesSimulator = up.responses
    method = scope["method"]
    parts = scope["path"].removeprefix("/v1/responses").strip("/").split("/")
    query = parse_qs(scope.get("query_string", b"").decode())
    try:
        if parts == [""] and method == "POST":
            answer = sim.create(body)
            if body.get("stream") is True:
                return await _sse(send, sse_frames(answer), up.chunk_delay)
            out: Any = answer.response
        elif parts == ["input_tokens"] and method == "POST":
            out = {"object": "response.input_tokens", "input_tokens": sim.count(body)}
        elif len(parts) == 1 and parts[0] and method in ("GET", "DELETE"):
            stored = sim.store.get(parts[0])
            if stored is None:
                raise _not_found(parts[0])
            if method == "GET":
                return await send_json(send, 200, orjson.dumps(stored.response), "mock")
            sim.store.delete(parts[0])
            out = {"id": parts[0], "object": "response.deleted", "deleted": True}
        elif len(parts) == 2 and parts[1] == "input_items" and method == "GET":
            out = _input_items(sim.store, parts[0], query)
        elif len(parts) == 2 and parts[1] == "cancel" and method == "POST":
            if sim.store.get(parts[0]) is None:
                raise _not_found(parts[0])
            raise Problem(400, "Only responses created with background=true can be cancelled.")
        else:
            raise Problem(404, f"Unknown path {method} {scope['path']}")
    except Problem as p:
        return await send_json(send, p.status, orjson.dumps(p.body), "mock")
    await send_json(send, 200, orjson.dumps(out), "mock")
