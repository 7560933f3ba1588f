"""The native relays (Messages, Responses): events between the marked ones go through as the upstream's
bytes. For any split of the upstream bytes into reads, the client gets what the event-by-event path
gives (the reference), and the usage, the end and the event count come out the same.

Event shapes as in Anthropic's streaming docs (https://docs.anthropic.com/en/api/messages-streaming)
and OpenAI's Responses streaming events (https://platform.openai.com/docs/api-reference/responses-streaming).
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.apis import base, messages, responses


def ev(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def anthropic_stream() -> bytes:
    msg = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-up", "content": []}
    msg["usage"] = {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 3}
    parts = [ev("message_start", {"type": "message_start", "message": msg})]
    parts.append(
        ev(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
    )
    parts.append(b'event: ping\ndata: {"type": "ping"}\n\n')
    for t in ("Hello", '"message_start"', "event: error\n\n", "!"):
        parts.append(
            ev(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}},
            )
        )
    parts.append(b": a comment\n\n")
    parts.append(b'data: {"type": "unnamed"}\n\n')
    parts.append(ev("content_block_stop", {"type": "content_block_stop", "index": 0}))
    parts.append(b"\n")  # a blank line more than needed: the marked event after it still comes out once
    parts.append(
        ev(
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}},
        )
    )
    parts.append(ev("message_stop", {"type": "message_stop"}))
    return b"".join(parts)


def responses_stream() -> bytes:
    resp = {"id": "resp_up", "object": "response", "model": "gpt-up", "status": "in_progress", "output": []}
    parts = [ev("response.created", {"type": "response.created", "sequence_number": 0, "response": resp})]
    parts.append(ev("response.in_progress", {"type": "response.in_progress", "sequence_number": 1, "response": resp}))
    for i, t in enumerate(("Hi", "event: response.completed", " there")):
        d = {"type": "response.output_text.delta", "sequence_number": 2 + i, "item_id": "msg_1", "delta": t}
        parts.append(ev("response.output_text.delta", d))
    parts.append(b"\n")  # a blank line more than needed
    done = dict(
        resp,
        status="completed",
        usage={"input_tokens": 9, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 2}},
    )
    parts.append(ev("response.completed", {"type": "response.completed", "sequence_number": 5, "response": done}))
    return b"".join(parts)


class SlowMessages(messages._Relay):
    marked = None  # the reference: every event parsed


class SlowResponses(responses._Relay):
    marked = None


def messages_relay(fast: bool) -> Any:
    ctx = SimpleNamespace(model="anthropic/claude", prompt_tokens=0, completion_tokens=0, cache_read=0, cache_write=0)
    relay = (messages._Relay if fast else SlowMessages)(ctx)  # type: ignore[arg-type]
    return relay, ctx


def responses_relay(fast: bool) -> Any:
    ctx = SimpleNamespace(
        model="vendor/gpt", prompt_tokens=0, completion_tokens=0, cache_read=0, who=SimpleNamespace(name="k")
    )
    ex = SimpleNamespace(ctx=ctx, rid="", body={"store": False})
    ex._new_id = lambda provider, upstream_id: setattr(ex, "rid", "resp_sy_" + upstream_id)
    ex._native_response = lambda obj, provider: responses.ResponsesExchange._native_response(ex, obj, provider)  # type: ignore[arg-type]
    relay = (responses._Relay if fast else SlowResponses)(ex, "openai")  # type: ignore[arg-type]
    return relay, ctx


def run(make: Any, data: bytes, cuts: list[int], fast: bool) -> tuple[bytes, Any, Any]:
    relay, ctx = make(fast)
    got = b""
    edges = [0, *sorted({c % len(data) for c in cuts}), len(data)]
    for a, b in itertools.pairwise(edges):
        if b > a:
            got += relay.feed(data[a:b])
    return got + relay.close(), relay, ctx


def same(make: Any, data: bytes, cuts: list[int]) -> tuple[bytes, Any, Any]:
    ref, rrelay, rctx = run(make, data, cuts, fast=False)
    got, relay, ctx = run(make, data, cuts, fast=True)
    assert got == ref
    assert vars(ctx) == vars(rctx) and relay.finished == rrelay.finished
    return got, relay, ctx


def test_one_read_messages() -> None:
    got, relay, ctx = same(messages_relay, anthropic_stream(), [])
    assert relay.finished and ctx.prompt_tokens == 28 and ctx.completion_tokens == 15 and ctx.cache_read == 3
    assert b'"model":"anthropic/claude"' in got and b"claude-up" not in got
    assert b'"text":"\\"message_start\\""' in got  # a delta that names a marked event is relayed as it is


def test_one_read_responses() -> None:
    got, relay, ctx = same(responses_relay, responses_stream(), [])
    assert relay.finished and relay.count == 6 and ctx.prompt_tokens == 9 and ctx.cache_read == 2
    assert b"gpt-up" not in got and b"resp_up" not in got.replace(b"resp_sy_resp_up", b"")


@settings(max_examples=300, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=5000), max_size=10), which=st.booleans())
def test_any_split_matches_the_event_path(cuts: list[int], which: bool) -> None:
    if which:
        same(messages_relay, anthropic_stream(), cuts)
    else:
        _, relay, _ = same(responses_relay, responses_stream(), cuts)
        assert relay.count == 6


@settings(max_examples=200, deadline=None)
@given(picks=st.lists(st.integers(min_value=0, max_value=30), max_size=8), which=st.booleans())
def test_reads_at_event_boundaries_match_the_event_path(picks: list[int], which: bool) -> None:
    data = anthropic_stream() if which else responses_stream()
    ends = [i + 2 for i in range(len(data) - 1) if data[i : i + 2] == b"\n\n"]
    same(messages_relay if which else responses_relay, data, [ends[p % len(ends)] for p in picks])


def clean(data: bytes) -> bytes:
    """Only named events, one blank line each: the reads the one-regex path takes whole."""
    events = [e.lstrip(b"\n") for e in data.split(b"\n\n")]
    events = [e for e in events if e.startswith(b"event: ")]
    return b"".join(e + b"\n\n" for e in events)


def test_clean_reads_are_spliced_without_looking_at_each_event(monkeypatch: Any) -> None:
    def each(self: Any, chunk: bytes) -> bytes:
        raise AssertionError("a clean read went event by event")

    monkeypatch.setattr(base.EventRelay, "_each", each)
    msg = clean(anthropic_stream())
    assert b"\n\n\n" not in msg and b"unnamed" not in msg
    got, relay, ctx = same(messages_relay, msg, [])
    assert relay.finished and ctx.completion_tokens == 15 and b"claude-up" not in got
    # A marked event in another form (an id line, two data lines) is read by the parser, in place.
    multi = msg.replace(
        b'event: message_delta\ndata: {"type":"message_delta",',
        b'event: message_delta\nid: 7\ndata: {"type":"message_delta",\ndata: ',
    )
    assert multi != msg
    _, relay, ctx = same(messages_relay, multi, [])
    assert relay.finished and ctx.completion_tokens == 15
    got, relay, _ = same(responses_relay, clean(responses_stream()), [])
    assert relay.finished and relay.count == 6 and b"gpt-up" not in got


@settings(max_examples=200, deadline=None)
@given(picks=st.lists(st.integers(min_value=0, max_value=30), max_size=8), which=st.booleans())
def test_clean_reads_at_event_boundaries_match_the_event_path(picks: list[int], which: bool) -> None:
    data = clean(anthropic_stream() if which else responses_stream())
    ends = [i + 2 for i in range(len(data) - 1) if data[i : i + 2] == b"\n\n"]
    same(messages_relay if which else responses_relay, data, [ends[p % len(ends)] for p in picks])


def test_the_marked_names_regex_matches_exactly_the_names() -> None:
    import re

    for names in ([b"a", b"ab", b"abc", b"b"], [b"x"], [b"ab", b"ac", b"a"], sorted(responses._Relay.marked or ())):
        r = re.compile(b"(?:" + base._alternation(names) + b")\\Z")
        assert all(r.match(n) for n in names)
        others = [b"", b"ac", b"abcd", b"ad", b"response.", b"response.completedx", b"response.output_text.delta"]
        assert not any(r.match(n) for n in others if n not in names)
