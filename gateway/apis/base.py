"""The ``Endpoint`` record: everything the pipeline needs to know about one client-facing API.

Chat Completions is the hub: every adapter speaks the chat form (and completions and embeddings,
which are chat's siblings on the OpenAI wire). Another client API is one record here plus, where
it is not one of those, a translator pair to and from the chat form; a provider that serves the
API itself declares it (``Capabilities.native``) and then gets the client's body as sent.
"""

from __future__ import annotations

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
    seek: tuple[bytes, ...] = ()  # what the ``event:`` line of every marked event starts with

    def __init__(self) -> None:
        self.parser = SSEParser()
        self.finished = False

    def feed(self, chunk: bytes) -> bytes:
        marked = self.marked
        if marked is None or not self.parser.idle or chunk[-2:] != b"\n\n" or b"\r" in chunk:
            return self._frame(self.parser.feed(chunk))
        if (
            chunk[:7] == b"event: "
            and chunk.count(b"\n\n") == chunk.count(b"\n\nevent: ") + 1
            and b"\n\n\n" not in chunk
        ):
            # Every event names itself first: only where ``seek`` finds one can a marked event start.
            starts = sorted({i for p in self.seek for i in _found(chunk, p) if i == 0 or chunk[i - 2 : i] == b"\n\n"})
        else:
            starts = _event_starts(chunk)  # other lines too: every event is looked at
        out: list[bytes] = []
        pos = 0  # where the events not yet relayed begin
        for start in starts:
            if start < pos:
                continue  # inside what was just relayed (a blank line more than needed came before it)
            if chunk.startswith(b"event: ", start) and chunk[start + 7 : chunk.find(b"\n", start)] not in marked:
                continue
            end = chunk.find(b"\n\n", start)
            end = len(chunk) if end < 0 else end + 2  # a read may end inside a run of blank lines
            if start > pos:
                out.append(self.passed(chunk[pos:start]))
            out.append(self._frame(self.parser.feed(chunk[start:end])))
            pos = end
        if pos < len(chunk):
            out.append(self.passed(chunk[pos:]))
        return b"".join(out)

    def close(self) -> bytes:
        return self._frame(self.parser.close())

    def passed(self, raw: bytes) -> bytes:
        """Whole events relayed unparsed (none of them ``marked``)."""
        return raw

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
