"""The ``Endpoint`` record: everything the pipeline needs to know about one client-facing API.

Chat Completions is the hub: every adapter speaks the chat form (and completions and embeddings,
which are chat's siblings on the OpenAI wire). Another client API is one record here plus, where
it is not one of those, a translator pair to and from the chat form; a provider that serves the
API itself declares it (``Capabilities.native``) and then gets the client's body as sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.errors import GatewayError
from gateway.wire.sse import DONE, SSEParser
from gateway.wire.types import SSEEvent


class ErrorShape(Protocol):
    """How a client API spells an error: the HTTP answer, and the event that ends a started stream."""

    def answer(self, err: GatewayError) -> tuple[int, bytes]: ...
    def event(self, err: GatewayError) -> bytes: ...


class OpenAIErrors:
    """``{"error": {"message", "type", "param", "code"}}``; mid-stream, one ``data:`` event."""

    def answer(self, err: GatewayError) -> tuple[int, bytes]:
        return err.status, err.to_bytes()

    def event(self, err: GatewayError) -> bytes:
        return err.sse_event()


OPENAI_ERRORS = OpenAIErrors()


@dataclass(frozen=True, slots=True, eq=False)
class Endpoint:
    """One generation API as clients speak it."""

    name: str  # "chat", "completions", "embeddings", "responses", "messages"
    paths: tuple[str, ...]  # the routes that serve it (the usage record's ``endpoint`` is the path)
    validate: Callable[[dict[str, Any]], None]  # the fields the gateway interprets; 400 with ``param``
    form: str  # the chat-form endpoint adapters are asked for (wire.types CHAT/COMPLETIONS/EMBEDDINGS)
    streams: bool = True  # may stream at all (embeddings never do)
    overflow_param: str = "max_tokens"  # the client's completion budget, for overflow handling
    errors: ErrorShape = OPENAI_ERRORS
    # OpenAI-wire APIs stream ``data:`` events and end with ``[DONE]``; the others end with an event.
    done: bytes | None = DONE
    # For an API that is not the chat form: makes the per-request ``Exchange`` (translation, or the
    # native pass-through for providers that list ``name`` in ``Adapter.native_apis``).
    exchange: Callable[[Any, dict[str, Any]], Exchange] | None = None
    stream_headers: tuple[tuple[bytes, bytes], ...] = ()


class StreamEncoder(Protocol):
    """Chat chunks in, the client API's framed events out (translated streams)."""

    def feed(self, chunk: dict[str, Any]) -> bytes: ...
    def finish(self) -> bytes: ...  # the proper end: closes what is open, then the terminal event
    def fail(self, err: GatewayError) -> bytes: ...  # the end after a mid-stream failure


class NativeRelay(Protocol):
    """A native stream's upstream bytes in, the client's bytes out (only ids and model rewritten);
    learns the usage and the proper end from the events it passes."""

    finished: bool
    prompt_tokens: int | None
    completion_tokens: int
    cache_read: int
    cache_write: int

    def feed(self, chunk: bytes) -> bytes: ...
    def close(self) -> bytes: ...  # whatever the upstream left unterminated
    def fail(self, err: GatewayError) -> bytes: ...


class EventRelay:
    """Base of the native relays: the events a relay must see (those named in ``marked``, and any
    without an ``event:`` line first) are parsed, handed to ``event`` and framed back as they came
    (``event:`` name and ``data:``); the others are relayed as the upstream's bytes, unparsed. A read
    that does not start and end at event boundaries goes event by event."""

    __slots__ = ("finished", "parser")
    marked: frozenset[bytes] | None = None  # None: every event is parsed
    # Built from ``marked`` for each subclass: a marked event (its one-line data captured), or an
    # event boundary not followed by ``event:`` (an event without a name, a run of blank lines).
    _head: re.Pattern[bytes] | None = None
    _scan: re.Pattern[bytes] | None = None
    _counts = False  # the subclass counts the events it relays unparsed (``relayed``)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._head = cls._scan = None
        if cls.marked is not None:
            event = rb"event: (" + _alternation(sorted(cls.marked)) + rb")\n(?:data: ([^\n]*)(?=\n\n))?"
            cls._head = re.compile(event)
            cls._scan = re.compile(rb"\n\n(?:" + event + rb"|(?!event: |\Z))")
        cls._counts = cls.relayed is not EventRelay.relayed

    def __init__(self) -> None:
        self.parser = SSEParser()
        self.finished = False

    def feed(self, chunk: bytes) -> bytes:
        scan = self._scan
        if scan is None or not self.parser.idle or chunk[-2:] != b"\n\n" or b"\r" in chunk:
            return self._frame(self.parser.feed(chunk))
        if chunk[:7] == b"event: ":
            # One pass of a regex finds the marked events and any boundary that breaks the rule that
            # every event names itself first; the events in between are the upstream's bytes.
            found = list(scan.finditer(chunk))
            if all(m.group(1) is not None for m in found):
                first = self._head.match(chunk)  # type: ignore[union-attr]
                return self._splice(chunk, [first, *found] if first else found)
        return self._each(chunk)

    def _splice(self, chunk: bytes, found: list[re.Match[bytes]]) -> bytes:
        """Whole events that each name themselves first, ``found`` the marked ones among them."""
        out: list[bytes] = []
        pos = 0  # where the events not yet relayed begin
        for m in found:
            start = m.start() + 2 if m.start() else 0  # a match after the first includes the "\n\n" before
            if start > pos:
                out.append(chunk[pos:start])
            name, data = m.group(1), m.group(2)
            if data is None:  # a marked event of more lines: the parser reads it
                end = chunk.find(b"\n\n", start) + 2
                out.append(self._frame(self.parser.feed(chunk[start:end])))
            else:
                end = m.end() + 2
                out.append(b"event: " + name + b"\ndata: " + self.event(name.decode(), data) + b"\n\n")
            pos = end
        if pos < len(chunk):
            out.append(chunk[pos:])
        if self._counts:
            self.relayed(chunk.count(b"\n\nevent: ") + 1 - len(found))
        return b"".join(out)

    def _each(self, chunk: bytes) -> bytes:
        """Whole events of any form: each looked at, the marked and nameless ones parsed."""
        marked = self.marked
        assert marked is not None
        out: list[bytes] = []
        pos = 0  # where the events not yet relayed begin
        for start in _event_starts(chunk):
            if start < pos:
                continue  # inside what was just relayed (a blank line more than needed came before it)
            if chunk.startswith(b"event: ", start) and chunk[start + 7 : chunk.find(b"\n", start)] not in marked:
                continue
            end = chunk.find(b"\n\n", start)
            end = len(chunk) if end < 0 else end + 2  # a read may end inside a run of blank lines
            if start > pos:
                out.append(self._passed(chunk[pos:start]))
            out.append(self._frame(self.parser.feed(chunk[start:end])))
            pos = end
        if pos < len(chunk):
            out.append(self._passed(chunk[pos:]))
        return b"".join(out)

    def _passed(self, raw: bytes) -> bytes:
        if self._counts:
            self.relayed(raw.count(b"\n\n"))
        return raw

    def close(self) -> bytes:
        return self._frame(self.parser.close())

    def relayed(self, n: int) -> None:
        """``n`` whole events relayed unparsed (none of them ``marked``)."""

    def _frame(self, events: list[SSEEvent]) -> bytes:
        out: list[bytes] = []
        for ev in events:
            name = ev.event
            data = self.event(name, ev.data)
            out.append(
                b"event: " + name.encode() + b"\ndata: " + data + b"\n\n" if name else b"data: " + data + b"\n\n"
            )
        return b"".join(out)

    def event(self, name: str | None, data: bytes) -> bytes:
        """One upstream event's data as the client gets it (rewritten or as is)."""
        return data


def _alternation(names: list[bytes]) -> bytes:
    """A regex matching exactly ``names``, common prefixes factored out: the engine then tests
    ``response.`` once per event, not once per name."""
    groups: dict[bytes, list[bytes]] = {}
    for n in sorted(names):
        groups.setdefault(n[:1], []).append(n)
    alts = []
    for group in groups.values():
        if len(group) == 1:
            alts.append(re.escape(group[0]))
            continue
        lo, hi = group[0], group[-1]  # sorted: what the first and last share, all share
        k = next((i for i, (x, y) in enumerate(zip(lo, hi, strict=False)) if x != y), len(lo))
        common = lo[:k]
        rest = [n[len(common) :] for n in group]
        optional = b"?" if b"" in rest else b""  # one name is a prefix of another
        alts.append(re.escape(common) + b"(?:" + _alternation([r for r in rest if r]) + b")" + optional)
    return b"|".join(alts)


def _found(data: bytes, needle: bytes) -> list[int]:
    """Every position of ``needle`` in ``data``."""
    out = []
    i = data.find(needle)
    while i >= 0:
        out.append(i)
        i = data.find(needle, i + 1)
    return out


def _event_starts(data: bytes) -> list[int]:
    """Where each event of whole events begins."""
    return [0, *(i + 2 for i in _found(data, b"\n\n")[:-1])]


class Exchange(Protocol):
    """One request of a client API that is not the chat form, between the pipeline and the
    translators: the chat-form request for translated providers, the body as sent for native
    ones, and the way back."""

    pinned: str | None  # the provider this request must go to (it keeps the conversation), if any

    async def prepare(self) -> None: ...  # e.g. the conversation behind previous_response_id
    def chat_body(self, provider: str) -> dict[str, Any]: ...  # 400 when it cannot be translated
    def answer(self, chat: dict[str, Any], provider: str) -> bytes: ...
    def encoder(self, provider: str, prompt_tokens: int) -> StreamEncoder: ...
    def native_body(self, provider: str, upstream_model: str) -> dict[str, Any]: ...  # a copy, model rewritten
    def native_answer(self, data: bytes, provider: str) -> bytes: ...
    def native_relay(self, provider: str) -> NativeRelay: ...
    async def keep(self) -> None: ...  # store what a later request may name, before the answer ends
