"""The SSE parser against the WHATWG event-stream rules that LLM APIs rely on."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.wire.sse import SSEParser, frame
from providers.base import SSEEvent


def parse_all(raw: bytes, step: int) -> list[SSEEvent]:
    p = SSEParser()
    out = []
    for i in range(0, len(raw), step):
        out.extend(p.feed(raw[i : i + step]))
    return out + p.close()


RAW = (
    b": comment\n\n"
    b'event: message_start\ndata: {"a": 1}\n\n'
    b"data:no-space\n\n"
    b"data: line1\ndata: line2\n\n"
    b"event: ping\ndata: {}\n\n"
    b"id: 5\nretry: 10\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent("message_start", b'{"a": 1}'),
    SSEEvent(None, b"no-space"),
    SSEEvent(None, b"line1\nline2"),
    SSEEvent("ping", b"{}"),
    SSEEvent(None, b"[DONE]"),
]


@pytest.mark.parametrize("step", [1, 2, 3, 5, 1000])
def test_lf_any_split(step):
    assert parse_all(RAW, step) == EXPECTED


@pytest.mark.parametrize("step", [1, 2, 3, 1000])
def test_crlf_and_cr_any_split(step):
    assert parse_all(RAW.replace(b"\n", b"\r\n"), step) == EXPECTED
    assert parse_all(RAW.replace(b"\n", b"\r"), step) == EXPECTED


def test_last_event_without_blank_line():
    p = SSEParser()
    assert p.feed(b"data: x") == []
    assert p.close() == [SSEEvent(None, b"x")]


def test_oversized_event_is_an_error():
    p = SSEParser(max_event_bytes=100)
    with pytest.raises(GatewayError):
        p.feed(b"data: " + b"x" * 200)


def test_frame():
    assert frame([b"{}"]) == b"data: {}\n\n"
    assert frame([b"1", b"2"]) == b"data: 1\n\ndata: 2\n\n"
