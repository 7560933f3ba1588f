"""The whole-read relay of OpenAI streams (``OpenAIStream.feed_chunk``) against the event-by-event path.

The event path is the reference: for any split of the upstream bytes into reads, the client must get
the same bytes, the same usage and the same end, whichever path each read takes.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.pipeline.relay import ChatOut
from gateway.wire.sse import DONE
from providers.base import CallContext
from providers.openai import OpenAIStream


def event(delta: dict[str, Any] | None, *, usage: Any = "absent", model: str = "gpt-4o-mini-2024-07-18") -> bytes:
    obj: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    obj["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": None}]
    if usage != "absent":
        obj["usage"] = usage
    return b"data: " + orjson.dumps(obj) + b"\n\n"


USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
TRICKY = ['say "model":"x" and \\"model\\"', '"usage":{"x":1}', "plain", "é ✓", "line\nbreak"]
DONE_TEXT = "data: [DONE]\n\nnot an end"  # the end marker as content: the event path takes that read


def stream(null_usage: bool, texts: list[str] = TRICKY, stray: bool = False) -> bytes:
    """OpenAI's shape: ``usage: null`` on every chunk when usage was asked for, then the usage chunk
    (``stray``: with a blank line more than needed, which the whole-read path leaves to the parser)."""
    u = None if null_usage else "absent"
    parts = [event({"role": "assistant", "content": ""}, usage=u)]
    parts += [event({"content": t}, usage=u) for t in texts]
    parts += [b"\n" if stray else b"", event({}, usage=u), event(None, usage=USAGE), DONE]
    return b"".join(parts)


class _Adapter:
    def bad_response(self, why: str) -> Exception:
        return ValueError(why)


def relay(data: bytes, cuts: list[int], include_usage: bool, fast: bool) -> tuple[bytes, OpenAIStream, ChatOut]:
    t = OpenAIStream(CallContext(client_model="vendor/gpt-4o-mini", include_usage=include_usage))
    out = ChatOut(_Adapter(), t, DONE)  # type: ignore[arg-type]
    if not fast:
        out.fast = None
    got = b""
    edges = [0, *sorted(set(cuts)), len(data)]
    for a, b in itertools.pairwise(edges):
        if b > a and not out.finished:
            got += out.feed(data[a:b])
    if not out.finished:
        got += out.close()
    return got + (out.end() if out.finished else b""), t, out


def test_one_read_takes_the_fast_path_and_matches_the_event_path() -> None:
    for null_usage in (True, False):
        data = stream(null_usage)
        for include_usage in (True, False):
            ref, rt, _ = relay(data, [], include_usage, fast=False)
            t = OpenAIStream(CallContext(client_model="vendor/gpt-4o-mini", include_usage=include_usage))
            assert t.feed_chunk(data) is not None  # the whole stream in one read is relayed by search
            got, ft, _ = relay(data, [], include_usage, fast=True)
            assert got == ref and ft.usage == rt.usage == USAGE and ft.finished and rt.finished
            assert ft.content_chunks == rt.content_chunks == len(TRICKY) + 2  # every event with choices
            assert b'"model":"vendor/gpt-4o-mini"' in got and b"2024-07-18" not in got
            assert (b'"usage":null' in got) == (include_usage and null_usage)


@settings(max_examples=300, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=2000), max_size=12),
    include_usage=st.booleans(),
    null_usage=st.booleans(),
)
def test_any_split_gives_the_same_bytes_as_the_event_path(
    cuts: list[int], include_usage: bool, null_usage: bool
) -> None:
    data = stream(null_usage, [*TRICKY, DONE_TEXT], stray=True)
    cuts = [c % len(data) for c in cuts]
    ref, rt, _ = relay(data, cuts, include_usage, fast=False)
    got, ft, _ = relay(data, cuts, include_usage, fast=True)
    assert got == ref and ft.usage == rt.usage and ft.finished == rt.finished
    assert ft.content_chunks == rt.content_chunks


def test_reads_the_fast_path_declines() -> None:
    t = OpenAIStream(CallContext(client_model="m"))
    spaced = b'data: {"model": "x", "choices": []}\n\n'
    mixed = event({"content": "a"}) + event({"content": "b"}, model="other")
    for data in (
        b'data: {"a":1}\n\ndata: {"b"',  # an event cut in two
        b'event: x\ndata: {"a":1}\n\n',  # another line
        b'data: {"a":1}\r\n\r\n',
        b'data: {"error":{"message":"boom"}}\n\n',
        b'data: {"a":1}\n\n: keep-alive\n\n',
        spaced,
        mixed,
        DONE + event({"content": "after the end"}),
        event({"content": "a"}) + b'data: {"error":{"message":"boom"}}\n\n',  # names no model
        event({"content": "a"}, usage=USAGE) + event({"content": "b"}, usage=None),  # usage mid-stream
        event({"content": "a"}, usage=None) + b'data: {"model":"gpt-4o-mini-2024-07-18","usage": null}\n\n',
    ):
        assert t.feed_chunk(data) is None, data
    assert not t.finished and t.usage is None and t.content_chunks == 0


def test_an_error_event_still_raises_through_the_event_path() -> None:
    data = event({"content": "a"}) + b'data: {"error":{"message":"boom","type":"server_error"}}\n\n'
    t = OpenAIStream(CallContext(client_model="m"))
    out = ChatOut(_Adapter(), t, DONE)  # type: ignore[arg-type]
    with pytest.raises(GatewayError, match="boom"):
        out.feed(data)


@settings(max_examples=200, deadline=None)
@given(picks=st.lists(st.integers(min_value=0, max_value=40), max_size=8), include_usage=st.booleans())
def test_reads_that_end_at_event_boundaries_match_the_event_path(picks: list[int], include_usage: bool) -> None:
    data = stream(True, [*TRICKY, DONE_TEXT, *TRICKY], stray=True)
    ends = [i + 2 for i in range(len(data)) if data[i : i + 2] == b"\n\n"]  # where each event ends
    cuts = [ends[p % len(ends)] for p in picks]
    ref, rt, _ = relay(data, cuts, include_usage, fast=False)
    got, ft, _ = relay(data, cuts, include_usage, fast=True)
    assert got == ref and ft.usage == rt.usage == USAGE and ft.finished and rt.finished


class _Recorder:
    """A client API's stream encoder that keeps the chat chunks it is given."""

    def __init__(self) -> None:
        self.chunks: list[dict[str, object]] = []

    def feed(self, chunk: dict[str, object]) -> bytes:
        self.chunks.append(chunk)
        return b"."

    def finish(self) -> bytes:
        return b""


@settings(max_examples=150, deadline=None)
@given(
    picks=st.lists(st.integers(min_value=0, max_value=40), max_size=8), cuts=st.lists(st.integers(1, 3000), max_size=4)
)
def test_a_translated_stream_gets_the_same_chunks_either_way(picks: list[int], cuts: list[int]) -> None:
    from gateway.pipeline.relay import TranslatedOut

    data = stream(True, [*TRICKY, DONE_TEXT, *TRICKY], stray=True)
    ends = [i + 2 for i in range(len(data)) if data[i : i + 2] == b"\n\n"]
    edges = sorted({*(ends[p % len(ends)] for p in picks), *(c % len(data) for c in cuts)})
    got = []
    for fast in (True, False):
        t = OpenAIStream(CallContext(client_model="vendor/gpt-4o-mini", include_usage=True))
        enc = _Recorder()
        out = TranslatedOut(_Adapter(), t, enc)  # type: ignore[arg-type]
        if not fast:
            out.fast = None
        for a, b in itertools.pairwise([0, *edges, len(data)]):
            if b > a and not out.finished:
                out.feed(data[a:b])
        if not out.finished:
            out.close()
        got.append((enc.chunks, t.usage, out.finished))
    assert got[0] == got[1] and got[0][1] == USAGE and got[0][2]


def test_a_name_as_long_as_the_upstreams_is_still_renamed() -> None:
    data = stream(True, ["a", "b"])
    same = "vendor/gpt-4o-mini-0718"[: len("gpt-4o-mini-2024-07-18")]  # another name, the same length
    t = OpenAIStream(CallContext(client_model=same, include_usage=True))
    got = t.feed_chunk(data)
    assert got is not None and got.count(f'"model":"{same}"'.encode()) == 5 and b"2024-07-18" not in got
    t = OpenAIStream(CallContext(client_model="gpt-4o-mini-2024-07-18", include_usage=True))
    assert t.feed_chunk(data) is not None  # the upstream's own name: relayed as it came
