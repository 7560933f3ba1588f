"""The Anthropic stream translator, fed Anthropic's documented event streams through the gateway's SSEParser.

The raw streams below are the "Response" blocks of https://platform.claude.com/docs/en/build-with-claude/streaming
(the basic request, the tool use request, the extended thinking request and the error event), byte for byte.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from gateway.errors import GatewayError
from gateway.wire.sse import SSEParser
from providers.anthropic import JSON_TOOL, AnthropicReply
from providers.base import CHAT, COMPLETIONS, CallContext, SSEEvent
from tests.unit.providers.anthropic import ANTHROPIC

# https://platform.claude.com/docs/en/build-with-claude/streaming ("Basic streaming request")
BASIC = b"""event: message_start
data: {"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence":null}, "usage": {"output_tokens": 15}}

event: message_stop
data: {"type": "message_stop"}

"""

# https://platform.claude.com/docs/en/build-with-claude/streaming ("Streaming request with tool use")
TOOL_USE = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":","}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" let"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"'s"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" check"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" weather"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" for"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" San"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" Francisco"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":","}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" CA"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":":"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"location\\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \\"San"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" Francisc"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"o,"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" CA\\""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":", "}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\\"unit\\": \\"fah"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"renheit\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}
"""

# https://platform.claude.com/docs/en/build-with-claude/streaming ("Streaming request with extended thinking")
THINKING = b"""event: message_start
data: {"type": "message_start", "message": {"id": "msg_01...", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me solve this step by step:\\n\\n1. First break down 27 * 453"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: content_block_start
data: {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "27 * 453 = 12,231"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 1}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}}

event: message_stop
data: {"type": "message_stop"}

"""

# https://platform.claude.com/docs/en/build-with-claude/streaming ("Error events")
ERROR = b"""event: error
data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

"""


def translator(endpoint: str = CHAT, include_usage: bool = True, **extra: Any):
    ctx = CallContext(
        "anthropic/claude-sonnet-4-5", include_usage=include_usage, created=11, reply=AnthropicReply(**extra)
    )
    return ANTHROPIC.adapter().stream_translator(endpoint, ctx)


def run(raw: bytes, pieces: list[bytes] | None = None, **kw: Any) -> tuple[list[dict[str, Any]], Any]:
    """Feed ``raw`` (optionally pre-split) through SSEParser and the translator; the decoded chunks out."""
    t = translator(**kw)
    parser = SSEParser()
    out: list[bytes] = []
    for piece in pieces if pieces is not None else [raw]:
        for ev in parser.feed(piece):
            out.extend(t.feed(ev))
    for ev in parser.close():
        out.extend(t.feed(ev))
    return [orjson.loads(p) for p in out], t


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_basic_stream():
    chunks, t = run(BASIC)
    assert t.finished
    assert {c["id"] for c in chunks} == {"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"}
    assert {c["model"] for c in chunks} == {"anthropic/claude-sonnet-4-5"}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["created"] for c in chunks} == {11}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == ["Hello", "!"]
    assert chunks[3]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    usage = {
        "prompt_tokens": 25,
        "completion_tokens": 15,
        "total_tokens": 40,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert chunks[4] == {
        "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
        "object": "chat.completion.chunk",
        "created": 11,
        "model": "anthropic/claude-sonnet-4-5",
        "choices": [],
        "usage": usage,
    }
    assert len(chunks) == 5
    assert all(c["usage"] is None for c in chunks[:4])  # as OpenAI sends them with include_usage
    assert t.usage == usage
    assert t.content_chunks == 2


def test_without_include_usage_there_is_no_usage_chunk_but_usage_is_kept():
    chunks, t = run(BASIC, include_usage=False)
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)
    assert t.usage["prompt_tokens"] == 25 and t.usage["completion_tokens"] == 15


@pytest.mark.parametrize("raw", [BASIC, TOOL_USE, THINKING])
def test_same_chunks_whatever_the_byte_boundaries(raw):
    whole, _ = run(raw)
    one_by_one, _ = run(raw, [raw[i : i + 1] for i in range(len(raw))])
    crlf = raw.replace(b"\n", b"\r\n")
    crlf_split, _ = run(crlf, [crlf[i : i + 1] for i in range(len(crlf))])
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(1, len(raw)), 40))
    ragged, _ = run(raw, [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)])
    assert one_by_one == whole
    assert crlf_split == whole
    assert ragged == whole


def test_tool_use_stream():
    chunks, t = run(TOOL_USE)
    assert text_of(chunks) == "Okay, let's check the weather for San Francisco, CA:"
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(c["index"] == 0 and set(c) == {"index", "function"} for c in calls[1:])
    arguments = "".join(c["function"]["arguments"] for c in calls)
    assert orjson.loads(arguments) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish == ["tool_calls"]
    assert chunks[-1]["usage"]["prompt_tokens"] == 472
    assert chunks[-1]["usage"]["completion_tokens"] == 89
    assert t.finished


def test_two_tool_calls_get_their_own_indexes():
    events = [
        {"type": "message_start", "message": {"id": "msg_x", "usage": {"input_tokens": 3, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "a", "name": "f"}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "b", "name": "g"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '{"x":1}'}},
    ]
    t = translator()
    out = [orjson.loads(p) for e in events for p in t.feed(SSEEvent(e["type"], orjson.dumps(e)))]
    deltas = [c["choices"][0]["delta"]["tool_calls"][0] for c in out[1:]]
    assert [(d["index"], d.get("id")) for d in deltas[:2]] == [(0, "a"), (1, "b")]
    assert [(d["index"], d["function"]["arguments"]) for d in deltas[2:]] == [(1, "{}"), (0, '{"x":1}')]


def test_thinking_is_skipped_and_missing_usage_stays_unknown():
    chunks, t = run(THINKING, include_usage=False)
    assert text_of(chunks) == "27 * 453 = 12,231"
    assert "thinking" not in orjson.dumps(chunks).decode()
    assert t.usage is None  # the example carries no usage: the gateway falls back to its estimate
    assert t.finished


def test_ping_and_unknown_event_types_are_ignored():
    t = translator()
    assert t.feed(SSEEvent("ping", b'{"type": "ping"}')) == []
    assert t.feed(SSEEvent("something_new", b'{"type": "something_new", "detail": 1}')) == []
    assert t.feed(SSEEvent(None, b"")) == []
    assert not t.finished


def test_error_event_mid_stream_raises():
    t = translator()
    events = SSEParser().feed(BASIC)
    relayed = [p for ev in events[:4] for p in t.feed(ev)]  # message_start .. the first text delta
    assert text_of([orjson.loads(p) for p in relayed]) == "Hello"
    (err_ev,) = SSEParser().feed(ERROR)
    with pytest.raises(GatewayError) as e:
        t.feed(err_ev)
    assert e.value.status == 503
    assert e.value.type == "overloaded_error"
    assert e.value.message == "anthropic: Overloaded"
    assert b"overloaded_error" in e.value.sse_event()


def test_other_stream_errors_are_502():
    data = b'{"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}'
    with pytest.raises(GatewayError) as e:
        translator().feed(SSEEvent("error", data))
    assert (e.value.status, e.value.type) == (502, "api_error")


def test_malformed_event_is_502():
    with pytest.raises(GatewayError) as e:
        translator().feed(SSEEvent("content_block_delta", b"{not json"))
    assert e.value.status == 502 and e.value.code == "upstream_bad_response"


def test_completions_stream_is_text_completion_chunks():
    chunks, t = run(BASIC, endpoint=COMPLETIONS)
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert [c["choices"][0]["text"] for c in chunks if c["choices"]] == ["Hello", "!", ""]
    assert chunks[2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 40
    assert t.finished


def test_json_tool_stream_becomes_content():
    events = [
        {"type": "message_start", "message": {"id": "msg_j", "usage": {"input_tokens": 5, "output_tokens": 1}}},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "t", "name": JSON_TOOL, "input": {}},
        },
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '{"a": '}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "1}"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}},
        {"type": "message_stop"},
    ]
    t = translator(json_tool=True)
    chunks = [orjson.loads(p) for e in events for p in t.feed(SSEEvent(e["type"], orjson.dumps(e)))]
    assert text_of(chunks) == '{"a": 1}'
    assert "tool_calls" not in orjson.dumps(chunks).decode()
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"


def test_input_tokens_repeated_in_message_delta_win_and_cache_reads_count():
    t = translator()
    start = {
        "type": "message_start",
        "message": {"id": "m", "usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 1}},
    }
    t.feed(SSEEvent("message_start", orjson.dumps(start)))
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"input_tokens": 12, "output_tokens": 7},
    }
    t.feed(SSEEvent("message_delta", orjson.dumps(delta)))
    assert t.usage == {
        "prompt_tokens": 102,
        "completion_tokens": 7,
        "total_tokens": 109,
        "prompt_tokens_details": {"cached_tokens": 90},
    }
