"""The Cohere v2 stream translator, fed Cohere's documented event streams through the gateway's SSEParser.

Golden sources (each test names its own):
- https://docs.cohere.com/reference/chat-stream: the documented "Streaming" event sequence
- https://docs.cohere.com/v2/docs/tool-use-streaming: the tool-calling step's event stream
"""

from __future__ import annotations

import orjson
import pytest

from gateway.errors import GatewayError
from providers.base import CHAT, COMPLETIONS, SSEEvent
from tests.unit.providers.cohere import COHERE

adapter, ctx, run_stream = COHERE.adapter, COHERE.ctx, COHERE.run_stream


# -- streams ----------------------------------------------------------------------------------

# https://docs.cohere.com/reference/chat-stream, the "Streaming" example, as SSE on the wire
# (event names as the reference lists them; the translator keys on each event's `type`).
DOC_STREAM_EVENTS = [
    (
        "stream-start",
        {
            "type": "message-start",
            "id": "29f14a5a-11de-4cae-9800-25e4747408ea",
            "delta": {"message": {"role": "assistant"}},
        },
    ),
    (
        "text-generation",
        {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
    ),
    *[
        ("text-generation", {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": t}}}})
        for t in ["Hello", "!", " How", " can", " I", " help", " you", " today", "?"]
    ],
    ("text-generation", {"type": "content-end", "index": 0}),
    (
        "stream-end",
        {
            "type": "message-end",
            "delta": {
                "finish_reason": "COMPLETE",
                "usage": {
                    "billed_units": {"input_tokens": 3, "output_tokens": 9},
                    "tokens": {"input_tokens": 69, "output_tokens": 9},
                },
            },
        },
    ),
]


def sse_bytes(events: list[tuple[str, dict]]) -> bytes:
    return b"".join(b"event: " + n.encode() + b"\r\ndata: " + orjson.dumps(d) + b"\r\n\r\n" for n, d in events)


@pytest.mark.parametrize("step", [1, 7, 64, 100_000])
def test_golden_stream_split_at_odd_boundaries(step):
    chunks, tr = run_stream(sse_bytes(DOC_STREAM_EVENTS), ctx(include_usage=True), step)
    assert tr.finished is True
    assert tr.usage == {"prompt_tokens": 69, "completion_tokens": 9, "total_tokens": 78}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(ch["id"] == "29f14a5a-11de-4cae-9800-25e4747408ea" for ch in chunks)
    assert all(ch["object"] == "chat.completion.chunk" and ch["model"] == "cohere/command-a-03-2025" for ch in chunks)
    text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch["choices"])
    assert text == "Hello! How can I help you today?"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1] == {
        **chunks[-1],
        "choices": [],
        "usage": {"prompt_tokens": 69, "completion_tokens": 9, "total_tokens": 78},
    }
    assert all(ch["usage"] is None for ch in chunks[:-1])


def test_stream_without_include_usage_has_no_usage_chunk():
    chunks, tr = run_stream(sse_bytes(DOC_STREAM_EVENTS), ctx(), 13)
    assert all("usage" not in ch for ch in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert tr.usage["prompt_tokens"] == 69  # still captured for accounting
    assert tr.content_chunks == 9


def _tool_deltas(index: int, pieces: list[str]) -> list[tuple[str, dict]]:
    return [
        (
            "tool-call-delta",
            {
                "type": "tool-call-delta",
                "index": index,
                "delta": {"message": {"tool_calls": {"function": {"arguments": p}}}},
            },
        )
        for p in pieces
    ]


def _tool_start(index: int, call_id: str) -> tuple[str, dict]:
    call = {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    return ("tool-call-start", {"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls": call}}})


# https://docs.cohere.com/v2/docs/tool-use-streaming, "Tool calling step" example stream, as wire JSON.
DOC_TOOL_STREAM = [
    (
        "message-start",
        {
            "type": "message-start",
            "id": "fba98ad3-e5a1-413c-a8de-84fbf9baabf7",
            "delta": {
                "message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
            },
        },
    ),
    *[
        ("tool-plan-delta", {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": t}}})
        for t in ["I", " will", " search", " for", " the", " weather", " in", " Madrid", " and", " Brasilia", "."]
    ],
    _tool_start(0, "get_weather_p1t92w7gfgq7"),
    *_tool_deltas(0, ['{\n    "', "location", '":', ' "', "Madrid", '"', "\n", "}"]),
    ("tool-call-end", {"type": "tool-call-end", "index": 0}),
    _tool_start(1, "get_weather_ay6nmvjgp9vn"),
    *_tool_deltas(1, ['{\n    "', "location", '":', ' "', "Bras", "ilia", '"', "\n", "}"]),
    ("tool-call-end", {"type": "tool-call-end", "index": 1}),
    (
        "message-end",
        {
            "type": "message-end",
            "delta": {
                "finish_reason": "TOOL_CALL",
                "usage": {
                    "billed_units": {"input_tokens": 37, "output_tokens": 28},
                    "tokens": {"input_tokens": 913, "output_tokens": 83},
                },
            },
        },
    ),
]


def test_golden_tool_call_stream():
    chunks, tr = run_stream(sse_bytes(DOC_TOOL_STREAM), ctx(), 5)
    deltas = [ch["choices"][0]["delta"] for ch in chunks]
    assert "".join(d.get("content") or "" for d in deltas) == "I will search for the weather in Madrid and Brasilia."
    calls: dict[int, dict] = {}
    for d in deltas:
        for tc in d.get("tool_calls") or ():
            slot = calls.setdefault(tc["index"], {"id": None, "name": None, "arguments": ""})
            slot["id"] = tc.get("id") or slot["id"]
            slot["name"] = (tc.get("function") or {}).get("name") or slot["name"]
            slot["arguments"] += (tc.get("function") or {}).get("arguments") or ""
    assert calls == {
        0: {"id": "get_weather_p1t92w7gfgq7", "name": "get_weather", "arguments": '{\n    "location": "Madrid"\n}'},
        1: {"id": "get_weather_ay6nmvjgp9vn", "name": "get_weather", "arguments": '{\n    "location": "Brasilia"\n}'},
    }
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert tr.usage == {"prompt_tokens": 913, "completion_tokens": 83, "total_tokens": 996}


def test_unknown_and_citation_events_are_ignored():
    tr = adapter().stream_translator(CHAT, ctx())
    for ev in (
        SSEEvent(
            "citation-start", b'{"type":"citation-start","index":0,"delta":{"message":{"citations":{"start":1}}}}'
        ),
        SSEEvent("citation-end", b'{"type":"citation-end","index":0}'),
        SSEEvent("debug", b'{"type":"debug","prompt":"x"}'),
        SSEEvent(None, b'{"type":"some-future-event"}'),
        SSEEvent(None, b""),
    ):
        assert tr.feed(ev) == []
    assert tr.finished is False


def test_stream_error_finish_raises():
    tr = adapter().stream_translator(CHAT, ctx())
    end = {"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "internal failure"}}
    with pytest.raises(GatewayError) as e:
        tr.feed(SSEEvent("message-end", orjson.dumps(end)))
    assert e.value.status == 502 and "internal failure" in e.value.message


def test_stream_error_event_and_garbage_raise():
    tr = adapter().stream_translator(CHAT, ctx())
    with pytest.raises(GatewayError) as e:
        tr.feed(SSEEvent(None, b'{"message":"too many tokens"}'))
    assert "too many tokens" in e.value.message
    with pytest.raises(GatewayError) as e:
        tr.feed(SSEEvent(None, b"{not json"))
    assert e.value.code == "upstream_bad_response"


def test_legacy_completions_stream():
    chunks, _ = run_stream(sse_bytes(DOC_STREAM_EVENTS), ctx(include_usage=True), 9, COMPLETIONS)
    assert all(ch["object"] == "text_completion" for ch in chunks)
    assert "".join(ch["choices"][0]["text"] for ch in chunks if ch["choices"]) == "Hello! How can I help you today?"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 78
