"""Chat Completions stream -> Responses API stream.

``ResponsesStream`` turns ``chat.completion.chunk`` dicts into Responses server-sent events in
OpenAI's order and shape (the openai SDK's ``ResponseStreamEvent`` models are the oracle). Events
go out as the chunks come in: nothing is buffered beyond the text needed for the ``.done`` events.
The Response object and the pieces both directions share are in ``responses_object``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from gateway.apis.responses_object import (
    ERROR_CODES,
    INCOMPLETE,
    ResponseHead,
    Snapshot,
    logprobs_of,
    new_id,
    response_object,
    responses_usage,
    tool_call_item,
    tool_catalog,
    unwrap_custom_input,
    wants_logprobs,
)

_WS = " \t\r\n"
_PREFIX = ("{", '"input"', ":", '"')  # the opening of {"input": "...", optional whitespace between
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_HEX = frozenset("0123456789abcdefABCDEF")
_PREFIXING, _STRING, _CLOSED, _RAW = range(4)


class _InputUnwrapper:
    """Decodes the string value of ``{"input": "..."}`` as its JSON arrives, so custom tool input streams.

    Anything that does not open with that shape (or has a bad escape) stops the live decoding; the
    final input is then taken from the whole arguments when the call closes.
    """

    __slots__ = ("carry", "pchar", "pstep", "state")

    def __init__(self) -> None:
        self.state = _PREFIXING
        self.pstep = self.pchar = 0
        self.carry = ""

    def feed(self, s: str) -> str:
        if self.state == _PREFIXING:
            i, n = 0, len(s)
            while i < n:
                c, tok = s[i], _PREFIX[self.pstep]
                i += 1
                if c == tok[self.pchar]:
                    self.pchar += 1
                    if self.pchar == len(tok):
                        self.pstep, self.pchar = self.pstep + 1, 0
                        if self.pstep == len(_PREFIX):
                            self.state = _STRING
                            break
                elif not (self.pchar == 0 and c in _WS):
                    self.state = _RAW
                    return ""
            s = s[i:]
        return self._string(s) if self.state == _STRING else ""

    def _string(self, s: str) -> str:
        s, self.carry = self.carry + s, ""
        parts: list[str] = []
        i, n = 0, len(s)
        while i < n:
            q, b = s.find('"', i), s.find("\\", i)
            if b == -1 or (q != -1 and q < b):
                if q == -1:
                    parts.append(s[i:])
                else:
                    parts.append(s[i:q])
                    self.state = _CLOSED
                break
            parts.append(s[i:b])
            if b + 1 >= n:
                self.carry = s[b:]  # an escape split across fragments
                break
            e = s[b + 1]
            if e != "u":
                ch = _ESCAPES.get(e)
                if ch is None:
                    self.state = _RAW
                    break
                parts.append(ch)
                i = b + 2
                continue
            if b + 6 > n:
                self.carry = s[b:]
                break
            hex4 = s[b + 2 : b + 6]
            if not _HEX.issuperset(hex4):
                self.state = _RAW
                break
            cp, i = int(hex4, 16), b + 6
            if 0xD800 <= cp < 0xDC00:  # high surrogate: wait for its pair
                if b + 12 > n:
                    self.carry = s[b:]
                    break
                low = s[b + 8 : b + 12]
                if s[b + 6 : b + 8] == "\\u" and _HEX.issuperset(low) and 0xDC00 <= int(low, 16) < 0xE000:
                    cp, i = 0x10000 + ((cp - 0xD800) << 10) + (int(low, 16) - 0xDC00), b + 12
                else:
                    cp = 0xFFFD
            elif 0xDC00 <= cp < 0xE000:
                cp = 0xFFFD  # a lone surrogate cannot be encoded
            parts.append(chr(cp))
        return "".join(parts)


class _Call:
    """One tool call being streamed, keyed by its chat ``index``."""

    __slots__ = ("args", "call_id", "ids", "index", "item", "kind", "name", "streamed", "unwrapper")

    def __init__(self, call_id: str | None) -> None:
        self.call_id = call_id
        self.name: str | None = None
        self.args: list[str] = []
        self.item: dict | None = None  # set once the item is announced (needs the name)
        self.index = -1
        self.ids: dict = {}
        self.kind = "function"
        self.streamed: list[str] = []  # custom tool input already sent as deltas
        self.unwrapper: _InputUnwrapper | None = None


class _Open:
    """The open message or reasoning item."""

    __slots__ = ("buf", "ids", "index", "item", "kind", "logprobs", "part")

    def __init__(self, kind: str, item: dict, index: int) -> None:
        self.kind = kind  # "message" | "reasoning"
        self.item = item
        self.index = index
        self.part: str | None = None  # the open part: output_text | refusal (reasoning has one summary part)
        self.ids = {"item_id": item["id"], "output_index": index, "content_index": -1}
        self.buf: list[str] = []
        self.logprobs: list[dict] = []


_DELTA = b'event: %s\ndata: {"type":"%s","sequence_number":%d,%s,"delta":%s%s}\n\n'
_EMPTY_PART = {
    "output_text": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""},
    "refusal": {"type": "refusal", "refusal": ""},
}


class ResponsesStream:
    """Feeds chat chunks, yields Responses SSE bytes; exactly one terminal event per stream."""

    __slots__ = (
        "_calls",
        "_catalog",
        "_cut",
        "_finish_reason",
        "_head",
        "_logprobs",
        "_open",
        "_output",
        "_seq",
        "_service_tier",
        "_started",
        "_terminal",
        "response",
        "usage",
    )

    def __init__(self, request: dict, resp_id: str, created_at: int, model: str) -> None:
        self._head = ResponseHead(request, resp_id, created_at, model)
        self._seq = 0
        self._started = self._terminal = False
        self._output: list[dict] = []
        self._open: _Open | None = None
        self._calls: dict[Any, _Call] = {}
        self._catalog = tool_catalog(request)
        self._logprobs = wants_logprobs(request)
        self._finish_reason: str | None = None
        self._service_tier: Any = None
        self._cut = 1 << 62  # items at or past this output index close as incomplete
        self.usage: dict | None = None
        self.response = response_object(self._head, Snapshot("in_progress", []))

    # -- public ------------------------------------------------------------------------------
    def start(self) -> bytes:
        """``response.created`` and ``response.in_progress``; the other methods call it if it was not."""
        if self._started or self._terminal:
            return b""
        self._started = True
        out: list[bytes] = []
        self._emit(out, "response.created", response=self.response)
        self._emit(out, "response.in_progress", response=self.response)
        return b"".join(out)

    def feed(self, chunk: dict) -> bytes:
        if self._terminal:
            return b""
        out: list[bytes] = [] if self._started else [self.start()]
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        if isinstance(chunk.get("service_tier"), str):
            self._service_tier = chunk["service_tier"]
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        if choice is not None:
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")  # servers use either name
            if isinstance(reasoning, str) and reasoning:
                self._reasoning(out, reasoning)
            content = delta.get("content")
            if isinstance(content, str) and content:
                lps = logprobs_of(choice.get("logprobs")) if self._logprobs else []
                self._text(out, "output_text", content, lps)
            refusal = delta.get("refusal")
            if isinstance(refusal, str) and refusal:
                self._text(out, "refusal", refusal, [])
            tool_calls = delta.get("tool_calls")
            for tc in tool_calls if isinstance(tool_calls, list) else ():
                if isinstance(tc, dict):
                    self._tool_call(out, tc)
            if isinstance(choice.get("finish_reason"), str):
                self._finish_reason = choice["finish_reason"]
        return b"".join(out)

    def finish(self) -> bytes:
        """Closes what is open, then ``response.completed`` or ``response.incomplete``."""
        if self._terminal:
            return b""
        out: list[bytes] = [self.start()]
        reason = INCOMPLETE.get(self._finish_reason or "")
        if reason:
            self._cut = len(self._output) - 1  # only the last item was cut short
        self._close_all(out, emit=True)
        status = "incomplete" if reason else "completed"
        self.response = self._final(status, incomplete_reason=reason)
        self._emit(out, f"response.{status}", response=self.response)
        self._terminal = True
        return b"".join(out)

    def fail(self, code: str, message: str) -> bytes:
        """``response.failed``; open items are kept in the output, marked incomplete, without done events."""
        if self._terminal:
            return b""
        out: list[bytes] = [self.start()]
        self._cut = 0  # whatever is still open did not finish
        self._close_all(out, emit=False)
        error = {"code": code if code in ERROR_CODES else "server_error", "message": message}
        self.response = self._final("failed", error=error)
        self._emit(out, "response.failed", response=self.response)
        self._terminal = True
        return b"".join(out)

    # -- events ------------------------------------------------------------------------------
    def _emit(self, out: list[bytes], etype: str, **fields: Any) -> None:
        event = {"type": etype, "sequence_number": self._seq, **fields}
        self._seq += 1
        out.append(b"event: " + etype.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n")

    def _delta(self, out: list[bytes], etype: bytes, ids: dict, text: str, tail: bytes = b"") -> None:
        """A delta event (most of a stream) put together as bytes: exactly what ``_emit`` gives for
        ``type, sequence_number, *ids, delta`` and ``tail``'s members, without a dict per event."""
        seq = self._seq
        self._seq += 1
        out.append(_DELTA % (etype, etype, seq, orjson.dumps(ids)[1:-1], orjson.dumps(text), tail))

    def _final(self, status: str, **kw: Any) -> dict:
        usage = responses_usage(self.usage)
        completed_at = int(time.time()) if status == "completed" else None
        now = Snapshot(status, self._output, usage, completed_at=completed_at, service_tier=self._service_tier, **kw)
        return response_object(self._head, now)

    def _add_item(self, out: list[bytes], item: dict) -> int:
        index = len(self._output)
        self._output.append(item)
        self._emit(out, "response.output_item.added", output_index=index, item=item)
        return index

    def _status(self, index: int) -> str:
        return "incomplete" if index >= self._cut else "completed"

    # -- message and reasoning items ---------------------------------------------------------
    def _text(self, out: list[bytes], part: str, text: str, logprobs: list[dict]) -> None:
        m = self._open
        if m is None or m.kind != "message":
            self._close_all(out, emit=True)  # text after reasoning or calls is a new message
            item = {"id": new_id("msg"), "type": "message", "status": "in_progress", "content": [], "role": "assistant"}
            m = self._open = _Open("message", item, len(self._output))
            self._add_item(out, item)
        if m.part != part:
            self._close_part(out, m, emit=True)
            m.part = part
            m.ids = {**m.ids, "content_index": m.ids["content_index"] + 1}
            self._emit(out, "response.content_part.added", **m.ids, part=_EMPTY_PART[part])
        m.buf.append(text)
        if part == "output_text":
            m.logprobs.extend(logprobs)
            if logprobs:
                self._emit(out, "response.output_text.delta", **m.ids, delta=text, logprobs=logprobs)
            else:
                self._delta(out, b"response.output_text.delta", m.ids, text, b',"logprobs":[]')
        else:
            self._delta(out, b"response.refusal.delta", m.ids, text)

    def _close_part(self, out: list[bytes], m: _Open, emit: bool) -> None:
        if m.part is None:
            return
        text = "".join(m.buf)
        if m.part == "output_text":
            part = {"type": "output_text", "annotations": [], "logprobs": m.logprobs, "text": text}
            if emit:
                self._emit(out, "response.output_text.done", **m.ids, text=text, logprobs=m.logprobs)
        else:
            part = {"type": "refusal", "refusal": text}
            if emit:
                self._emit(out, "response.refusal.done", **m.ids, refusal=text)
        m.item["content"].append(part)
        if emit:
            self._emit(out, "response.content_part.done", **m.ids, part=part)
        m.part, m.buf, m.logprobs = None, [], []

    def _reasoning(self, out: list[bytes], text: str) -> None:
        r = self._open
        if r is None or r.kind != "reasoning":
            self._close_all(out, emit=True)
            item = {"id": new_id("rs"), "type": "reasoning", "summary": []}
            r = self._open = _Open("reasoning", item, len(self._output))
            r.ids = {"item_id": item["id"], "output_index": r.index, "summary_index": 0}
            self._add_item(out, item)
            self._emit(out, "response.reasoning_summary_part.added", **r.ids, part={"type": "summary_text", "text": ""})
        r.buf.append(text)
        self._delta(out, b"response.reasoning_summary_text.delta", r.ids, text)

    def _close_open(self, out: list[bytes], emit: bool) -> None:
        o, self._open = self._open, None
        if o is None:
            return
        if o.kind == "reasoning":
            text = "".join(o.buf)
            part = {"type": "summary_text", "text": text}
            o.item["summary"].append(part)
            if emit:
                self._emit(out, "response.reasoning_summary_text.done", **o.ids, text=text)
                self._emit(out, "response.reasoning_summary_part.done", **o.ids, part=part)
        else:
            self._close_part(out, o, emit)
            o.item["status"] = self._status(o.index)
        if emit:
            self._emit(out, "response.output_item.done", output_index=o.index, item=o.item)

    # -- tool calls --------------------------------------------------------------------------
    def _tool_call(self, out: list[bytes], tc: dict) -> None:
        cid = tc.get("id") if isinstance(tc.get("id"), str) and tc.get("id") else None
        key: Any = tc.get("index")
        if not isinstance(key, int) or isinstance(key, bool):
            # No index: a fragment with an id is its own call, one without continues the latest call.
            key = cid if cid is not None else (next(reversed(self._calls)) if self._calls else 0)
        call = self._calls.get(key)
        if call is not None and cid is not None and call.call_id is not None and cid != call.call_id:
            self._close_call(out, call, emit=True)  # a provider reusing an index for its next call
            del self._calls[key]
            call = None
        if call is None:
            call = self._calls[key] = _Call(cid)
        elif call.call_id is None:
            call.call_id = cid
        fn = tc.get("function") if isinstance(tc.get("function"), dict) else {}
        if call.item is None and isinstance(fn.get("name"), str) and fn["name"]:
            call.name = fn["name"]
            self._announce(out, call)
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            call.args.append(args)
            if call.item is not None:
                self._call_delta(out, call, args)

    def _make_item(self, call: _Call) -> dict:
        """Builds the call's output item and takes its output index (no event)."""
        tool = self._catalog.get(call.name or "", (None, call.name or "", "function"))
        call.kind = tool[2]
        if call.kind == "custom":
            call.unwrapper = _InputUnwrapper()
        item = tool_call_item(tool, call.call_id or new_id("call"), "in_progress", "")
        call.item, call.index = item, len(self._output)
        call.ids = {"item_id": item["id"], "output_index": call.index}
        self._output.append(item)
        return item

    def _announce(self, out: list[bytes], call: _Call) -> None:
        if self._open is not None:
            self._close_open(out, emit=True)  # a call after text or reasoning closes that item
        item = self._make_item(call)
        self._emit(out, "response.output_item.added", output_index=call.index, item=item)
        for piece in call.args:  # fragments that came before the name
            self._call_delta(out, call, piece)

    def _call_delta(self, out: list[bytes], call: _Call, piece: str) -> None:
        if call.unwrapper is None:
            self._delta(out, b"response.function_call_arguments.delta", call.ids, piece)
            return
        text = call.unwrapper.feed(piece)
        if text:
            call.streamed.append(text)
            self._emit(out, "response.custom_tool_call_input.delta", **call.ids, delta=text)

    def _close_call(self, out: list[bytes], call: _Call, emit: bool) -> None:
        if call.item is None:
            if not call.args and call.name is None:
                return  # an empty fragment: nothing to report
            call.name = call.name or ""  # arguments without a name still reach the client, who can reject them
            if emit:
                self._announce(out, call)
            else:
                self._make_item(call)
        item = call.item
        assert item is not None
        args = "".join(call.args)
        if call.kind == "custom":
            item["input"] = final = unwrap_custom_input(args)
            streamed = "".join(call.streamed)
            if emit:
                if final != streamed and final.startswith(streamed):  # what live decoding could not send
                    self._emit(out, "response.custom_tool_call_input.delta", **call.ids, delta=final[len(streamed) :])
                self._emit(out, "response.custom_tool_call_input.done", **call.ids, input=final)
        else:
            item["arguments"] = args
            if emit:
                self._emit(out, "response.function_call_arguments.done", **call.ids, arguments=args)
        item["status"] = self._status(call.index)
        if emit:
            self._emit(out, "response.output_item.done", output_index=call.index, item=item)

    def _close_all(self, out: list[bytes], emit: bool) -> None:
        self._close_open(out, emit)
        calls = sorted(self._calls.values(), key=lambda c: c.index if c.item is not None else 1 << 30)
        self._calls = {}
        for call in calls:
            self._close_call(out, call, emit)
