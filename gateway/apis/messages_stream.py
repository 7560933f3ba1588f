"""Chat Completions answers and errors as the Anthropic Messages API's: the streaming half.

``MessagesStream`` turns ``chat.completion.chunk`` dicts into Anthropic's documented event
sequence (https://platform.claude.com/docs/en/build-with-claude/streaming): ``message_start``,
per block ``content_block_start`` / ``content_block_delta``... / ``content_block_stop``, then
``message_delta`` and ``message_stop``. The helpers here are shared with ``from_chat`` in
``messages_translate`` so a streamed answer accumulates to exactly the non-streamed Message.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from gateway.errors import GatewayError

# -- errors (https://platform.claude.com/docs/en/api/errors) ------------------------------------

ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# The gateway's 503 (no upstream can take the call now) is what Anthropic answers 529 for; the
# anthropic SDK raises OverloadedError for 529 and Claude Code retries it as "overloaded".
_STATUS = {503: 529}


def error_status(err: GatewayError) -> int:
    """The HTTP status to answer with: the gateway's own, except 503 -> 529 (and nonsense -> 500)."""
    status = err.status
    if not 400 <= status <= 599:
        return 500
    return _STATUS.get(status, status)


def _error_obj(err: GatewayError) -> dict:
    status = error_status(err)
    kind = ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    # No ``details.error_code``: the SDK picks special exception classes from it.
    return {"type": "error", "error": {"type": kind, "message": err.message}}


def error_body(err: GatewayError) -> bytes:
    """The JSON body of an HTTP error answer."""
    return orjson.dumps(_error_obj(err))


def error_event(err: GatewayError) -> bytes:
    """The mid-stream form: one terminal ``event: error`` frame (no ``message_stop`` follows)."""
    return b"event: error\ndata: " + orjson.dumps(_error_obj(err)) + b"\n\n"


# -- shared answer helpers ----------------------------------------------------------------------

_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(
    finish: str | None, has_tools: bool, matched: Any = None, stop_sequences: list[str] | None = None
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) for a chat ``finish_reason``.

    Some providers answer "stop" (or nothing) after tool calls; Anthropic clients run tools on
    ``tool_use``, so tool calls win over a plain stop.
    """
    if finish in (None, "stop") and has_tools:
        return "tool_use", None
    if finish == "stop" and isinstance(matched, str) and stop_sequences and matched in stop_sequences:
        return "stop_sequence", matched  # vLLM says which stop string matched
    return _STOP.get(finish or "stop", "end_turn"), None


def usage_from_chat(usage: dict | None) -> dict:
    """Anthropic usage from chat usage: its ``input_tokens`` exclude cache reads and writes, reported apart
    (writes only where the provider bills them apart and says so, as ``cache_write_tokens``)."""
    usage = usage or {}
    prompt = usage.get("prompt_tokens") or 0
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") or 0
    written = details.get("cache_write_tokens") or 0
    return {
        "input_tokens": max(prompt - cached - written, 0),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": usage.get("completion_tokens") or 0,
    }


def msg_id(chat_id: Any, prefix: str = "msg_") -> str:
    """An Anthropic-style id: derived from the upstream's, so logs on both sides line up."""
    if isinstance(chat_id, str) and chat_id:
        return chat_id if chat_id.startswith(prefix) else prefix + chat_id.removeprefix("chatcmpl-")
    return prefix + uuid.uuid4().hex


def parse_arguments(arguments: Any) -> dict:
    """A tool call's arguments as the ``input`` object Anthropic guarantees.

    Empty (a call without arguments) and invalid JSON become ``{}``: the client's tool runner then
    reports the missing arguments back to the model, the same recovery as for wrong arguments,
    where raising would throw away the whole answer.
    """
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


# -- streaming ----------------------------------------------------------------------------------

_DELTA_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_DELTA_KEYS = {
    "text": b',"delta":{"type":"text_delta","text":',
    "thinking": b',"delta":{"type":"thinking_delta","thinking":',
    "tool": b',"delta":{"type":"input_json_delta","partial_json":',
}
_DELTA_TAIL = b"}}\n\n"
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def _frame(kind: bytes, event: dict) -> bytes:
    return b"event: " + kind + b"\ndata: " + orjson.dumps(event) + b"\n\n"


class MessagesStream:
    """One streamed answer: ``feed`` each chat chunk, then ``finish`` (or ``error``)."""

    __slots__ = (
        "_block",
        "_deltas",
        "_done",
        "_finish",
        "_head",
        "_kind",
        "_matched",
        "_parts",
        "_stops",
        "_tool_index",
        "has_tools",
        "input_tokens",
        "message",
        "model",
        "msg_id",
        "usage",
    )

    def __init__(
        self, model: str, input_tokens: int, msg_id: str | None = None, *, stop_sequences: list[str] | None = None
    ) -> None:
        self.model = model
        self.input_tokens = input_tokens  # the gateway's own count: upstreams report usage only at the end
        self.msg_id = msg_id
        self._stops = stop_sequences
        self.usage: dict | None = None  # the chat usage dict, once seen
        self.message: dict = {}  # the accumulated Message, complete after finish()
        self.has_tools = False
        self._kind: str | None = None  # the open block: "text" | "thinking" | "tool" | None
        self._block: dict = {}
        self._tool_index: Any = None  # chat index of the open tool call
        self._parts: list[str] = []
        self._head = b""  # content_block_delta frame up to the delta's value, for the open block
        self._deltas = 0  # own count of non-empty deltas, for output_tokens without upstream usage
        self._finish: str | None = None
        self._matched: Any = None
        self._done = False

    def _start(self, chat_id: Any) -> bytes:
        self.message = message = {
            "id": self.msg_id or msg_id(chat_id),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # output_tokens 1 as in Anthropic's documented stream: the final count comes in message_delta.
            "usage": {
                "input_tokens": self.input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
            },
        }
        return _frame(b"message_start", {"type": "message_start", "message": message})

    def feed(self, chunk: dict) -> bytes:
        """One ``chat.completion.chunk`` dict -> the framed events it makes (may be b"")."""
        if self._done:
            return b""
        out = b"" if self.message else self._start(chunk.get("id"))
        usage = chunk.get("usage")
        if usage:
            self.usage = usage
        choices = chunk.get("choices")
        if not choices:
            return out
        choice = choices[0]
        delta = choice.get("delta")
        if delta:
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                out += self._delta("thinking", reasoning)
            text = delta.get("content")
            if text:
                out += self._delta("text", text)
            calls = delta.get("tool_calls")
            if calls:
                for call in calls:
                    out += self._tool(call)
        finish = choice.get("finish_reason")
        if finish:
            self._finish = finish
            self._matched = choice.get("stop_reason")
        return out

    def _delta(self, kind: str, value: str) -> bytes:
        out = b"" if self._kind == kind else self._close() + self._open(kind)
        self._parts.append(value)
        self._deltas += 1
        return out + self._head + orjson.dumps(value) + _DELTA_TAIL

    def _tool(self, call: dict) -> bytes:
        # A new chat index (or a new call id, for providers that omit the index) starts a new tool_use
        # block. Providers stream calls one after another; a fragment of an already closed call cannot
        # be sent (its block is stopped) and starts a new one.
        index = call.get("index", 0)
        fn = call.get("function") or {}
        out = b""
        call_id = call.get("id")
        if self._kind != "tool" or self._tool_index != index or (call_id and call_id != self._block["id"]):
            out = self._close() + self._open("tool", call_id, fn.get("name"))
            self._tool_index = index
        args = fn.get("arguments")
        if isinstance(args, str):
            # Even "" is sent: Anthropic opens every tool_use block with an empty input_json_delta.
            self._parts.append(args)
            if args:
                self._deltas += 1
            out += self._head + orjson.dumps(args) + _DELTA_TAIL
        return out

    def _open(self, kind: str, call_id: str | None = None, name: str | None = None) -> bytes:
        content = self.message["content"]
        index = len(content)
        if kind == "text":
            block: dict = {"type": "text", "text": ""}
        elif kind == "thinking":
            # No signature_delta ever follows: a signature is Anthropic's attestation and there is none.
            block = {"type": "thinking", "thinking": "", "signature": ""}
        else:
            block = {"type": "tool_use", "id": call_id or msg_id(None, "toolu_"), "name": name or "", "input": {}}
            self.has_tools = True
        frame = _frame(b"content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
        content.append(block)
        self._kind, self._block, self._parts = kind, block, []
        self._head = _DELTA_HEAD + str(index).encode() + _DELTA_KEYS[kind]
        return frame

    def _close(self) -> bytes:
        kind = self._kind
        if kind is None:
            return b""
        joined = "".join(self._parts)
        if kind == "tool":
            self._block["input"] = parse_arguments(joined)
        else:
            self._block[kind] = joined
        self._kind = self._tool_index = None
        index = len(self.message["content"]) - 1
        return _frame(b"content_block_stop", {"type": "content_block_stop", "index": index})

    def finish(self) -> bytes:
        """Close the open block, then ``message_delta`` (stop reason, final usage) and ``message_stop``."""
        if self._done:
            return b""
        self._done = True
        out = b"" if self.message else self._start(None)
        out += self._close()
        reason, sequence = stop_reason(self._finish, self.has_tools, self._matched, self._stops)
        message = self.message
        message["stop_reason"], message["stop_sequence"] = reason, sequence
        if self.usage:
            usage = usage_from_chat(self.usage)  # cumulative, with the upstream's real prompt count
            message["usage"] = usage
        else:
            usage = {"output_tokens": self._deltas}
            message["usage"]["output_tokens"] = self._deltas
        event = {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence}, "usage": usage}
        return out + _frame(b"message_delta", event) + _MESSAGE_STOP

    def error(self, err: GatewayError) -> bytes:
        """A terminal ``event: error`` frame; nothing follows it."""
        if self._done:
            return b""
        self._done = True
        return error_event(err)
