"""GeminiStream: Gemini SSE frames (whole GenerateContentResponse objects) -> OpenAI chunks.

Frames are fed through the gateway's SSEParser, split at odd byte boundaries, with the CRLF
framing Google's streams use.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.errors import GatewayError
from gateway.wire.sse import SSEParser
from providers.base import CHAT, COMPLETIONS, CallContext, SSEEvent
from providers.gemini import GeminiReply, GeminiStream
from tests.unit.providers.gemini import GEMINI

# The first frame of https://github.com/google-gemini/cookbook/blob/main/quickstarts/rest/Streaming_REST.ipynb
# ("Stream Generate Content" output, alt=sse), byte for byte: note the CRLF line ends.
SAFETY = (
    '[{"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT","probability": "NEGLIGIBLE"},'
    '{"category": "HARM_CATEGORY_HATE_SPEECH","probability": "NEGLIGIBLE"},'
    '{"category": "HARM_CATEGORY_HARASSMENT","probability": "NEGLIGIBLE"},'
    '{"category": "HARM_CATEGORY_DANGEROUS_CONTENT","probability": "NEGLIGIBLE"}]'
)
COOKBOOK_FRAME = (
    'data: {"candidates": [{"content": {"parts": [{"text": "In the quaint, sunlit cottage nestled amidst a lush '
    'meadow, resided two feline"}],"role": "model"},"finishReason": "STOP","index": 0,"safetyRatings": '
    + SAFETY
    + '}],"promptFeedback": {"safetyRatings": '
    + SAFETY
    + "}}\r\n\r\n"
).encode()


def translator(endpoint: str = CHAT, n: int = 1, include_usage: bool = False) -> GeminiStream:
    ctx = CallContext(client_model="gemini/gemini-2.0-flash", include_usage=include_usage, created=1700000000)
    ctx.reply = GeminiReply(n=n)
    return GEMINI.adapter().stream_translator(endpoint, ctx)


def sse(frames: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(f) + b"\r\n\r\n" for f in frames)


def run(t: GeminiStream, raw: bytes, step: int) -> tuple[list[dict[str, Any]], bool]:
    """Feed ``raw`` in ``step``-byte reads, as the relay does; return the chunks and whether the
    translator reported its end at the very last frame and not before."""
    parser = SSEParser()
    out: list[dict[str, Any]] = []
    for i in range(0, len(raw), step):
        for ev in parser.feed(raw[i : i + step]):
            assert not t.finished, "a frame arrived after the translator had finished"
            out.extend(orjson.loads(p) for p in t.feed(ev))
    for ev in parser.close():
        out.extend(orjson.loads(p) for p in t.feed(ev))
    return out, t.finished


def text_of(chunks: list[dict[str, Any]], index: int = 0) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in chunks
        if c["choices"] and c["choices"][0]["index"] == index
    )


def frame(text: str | None = None, finish: str | None = None, index: int | None = None, **extra: Any) -> dict:
    cand: dict[str, Any] = {"content": {"parts": [{"text": text}] if text is not None else [], "role": "model"}}
    if finish:
        cand["finishReason"] = finish
    if index is not None:
        cand["index"] = index
    return {"candidates": [cand], **extra}


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 100000])
def test_golden_cookbook_frame_with_crlf_at_any_split(step):
    chunks, finished = run(translator(), COOKBOOK_FRAME, step)
    assert finished
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "In the quaint, sunlit cottage nestled amidst a lush meadow, resided two feline"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "stop"]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gemini/gemini-2.0-flash" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert all("usage" not in c for c in chunks)


# A stream as https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent describes it:
# each frame a GenerateContentResponse with running usageMetadata, finishReason only on the last.
USAGE_FINAL = {"promptTokenCount": 7, "candidatesTokenCount": 5, "totalTokenCount": 15, "thoughtsTokenCount": 3}
STREAM = [
    frame("Once", usageMetadata={"promptTokenCount": 7, "totalTokenCount": 7}, modelVersion="gemini-2.0-flash"),
    frame(" upon a", usageMetadata={"promptTokenCount": 7, "totalTokenCount": 7}),
    frame(" time.", usageMetadata={"promptTokenCount": 7, "totalTokenCount": 7}),
    frame("", "STOP", usageMetadata=USAGE_FINAL),
]


@pytest.mark.parametrize("step", [1, 5, 33, 4096])
def test_text_stream_ends_at_the_finish_reason(step):
    t = translator(include_usage=True)
    chunks, finished = run(t, sse(STREAM), step)
    assert finished
    assert text_of(chunks) == "Once upon a time."
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [c["choices"][0]["finish_reason"] for c in finish] == ["stop"]
    # The usage chunk comes last, with no choices; every other chunk carries "usage": null.
    usage = {
        "prompt_tokens": 7,
        "completion_tokens": 8,
        "total_tokens": 15,
        "completion_tokens_details": {"reasoning_tokens": 3},
    }
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == usage
    assert all(c["usage"] is None for c in chunks[:-1])
    assert t.usage == usage and t.content_chunks == 3


def test_usage_chunk_only_when_asked_but_usage_always_kept():
    t = translator(include_usage=False)
    chunks, finished = run(t, sse(STREAM), 4096)
    assert finished and all(c["choices"] for c in chunks) and all("usage" not in c for c in chunks)
    assert t.usage["prompt_tokens"] == 7


def test_not_finished_without_a_finish_reason():
    t = translator()
    chunks, finished = run(t, sse(STREAM[:3]), 10)
    assert not finished and text_of(chunks) == "Once upon a time."


def test_two_candidates_finish_when_both_have():
    frames = [
        {"candidates": [{"content": {"parts": [{"text": "A1"}], "role": "model"}, "index": 0}]},
        {"candidates": [{"content": {"parts": [{"text": "B1"}], "role": "model"}, "index": 1}]},
        {
            "candidates": [
                {"content": {"parts": [{"text": " A2"}], "role": "model"}, "finishReason": "STOP", "index": 0}
            ]
        },
    ]
    last = {
        "candidates": [
            {"content": {"parts": [{"text": " B2"}], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 1}
        ]
    }
    t = translator(n=2)
    chunks, finished = run(t, sse(frames), 9)
    assert not finished
    more, finished = run(t, sse([last]), 9)
    chunks += more
    assert finished
    assert text_of(chunks, 0) == "A1 A2" and text_of(chunks, 1) == "B1 B2"
    roles = [c["choices"][0]["index"] for c in chunks if c["choices"][0]["delta"].get("role")]
    assert roles == [0, 1]
    finishes = {
        c["choices"][0]["index"]: c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]
    }
    assert finishes == {0: "stop", 1: "length"}


def test_function_call_stream():
    # Function calls arrive whole in one frame (https://ai.google.dev/gemini-api/docs/function-calling).
    frames = [
        {
            "candidates": [
                {
                    "content": {
                        "parts": [
                            {
                                "functionCall": {"name": "set_light_color", "args": {"rgb_hex": "9400d3"}},
                                "thoughtSignature": "Q2lR",
                            },
                            {"functionCall": {"name": "stop_lights", "args": {}}},
                        ],
                        "role": "model",
                    },
                    "finishReason": "STOP",
                    "index": 0,
                }
            ]
        }
    ]
    chunks, finished = run(translator(), sse(frames), 11)
    assert finished
    calls = chunks[1]["choices"][0]["delta"]["tool_calls"]
    assert [(c["index"], c["type"], c["function"]) for c in calls] == [
        (0, "function", {"name": "set_light_color", "arguments": '{"rgb_hex":"9400d3"}'}),
        (1, "function", {"name": "stop_lights", "arguments": "{}"}),
    ]
    assert all(c["id"].startswith("call_") for c in calls) and calls[0]["id"] != calls[1]["id"]
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "Q2lR"}}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_streamed_signatures_are_reported_by_call_id():
    part = {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "Q2lR"}
    frames = [{"candidates": [{"content": {"parts": [part], "role": "model"}, "finishReason": "STOP", "index": 0}]}]
    tr = translator()
    chunks, _ = run(tr, sse(frames), 7)
    (call,) = chunks[1]["choices"][0]["delta"]["tool_calls"]
    assert tr.ctx.signatures == {call["id"]: "Q2lR"}


def test_thoughts_and_empty_parts_are_not_content():
    frames = [
        {"candidates": [{"content": {"parts": [{"text": "Let me think", "thought": True}], "role": "model"}}]},
        frame("Answer."),
        {
            "candidates": [
                {
                    "content": {"parts": [{"text": "", "thoughtSignature": "c2ln"}], "role": "model"},
                    "finishReason": "STOP",
                }
            ]
        },
    ]
    t = translator()
    chunks, finished = run(t, sse(frames), 5)
    assert finished and text_of(chunks) == "Answer." and t.content_chunks == 1


def test_repeated_finish_reason_adds_nothing():
    t = translator()
    out = t.feed(SSEEvent(None, orjson.dumps(frame("x", "STOP"))))
    assert t.finished and len(out) == 3
    assert t.feed(SSEEvent(None, orjson.dumps({"candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL"}]}))) == []


def test_keepalive_and_blank_events_are_ignored():
    t = translator()
    assert t.feed(SSEEvent(None, b"")) == [] and t.feed(SSEEvent(None, b"  ")) == []
    assert t.feed(SSEEvent(None, orjson.dumps({"usageMetadata": {"promptTokenCount": 1}}))) == []


@pytest.mark.parametrize(
    ("err", "status", "code"),
    [
        (
            {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"},
            429,
            "RESOURCE_EXHAUSTED",
        ),
        ({"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}, 500, "INTERNAL"),
        ({"message": "odd"}, 502, None),
    ],
)
def test_error_frame_raises(err, status, code):
    t = translator()
    t.feed(SSEEvent(None, orjson.dumps(frame("partial"))))
    with pytest.raises(GatewayError) as e:
        t.feed(SSEEvent(None, orjson.dumps({"error": err})))
    assert (e.value.status, e.value.code) == (status, code) and e.value.message.startswith("gemini: ")


def test_blocked_prompt_frame_raises_content_filter():
    # Safety_REST.ipynb (cookbook): a blocked prompt has promptFeedback.blockReason and no candidates.
    t = translator()
    with pytest.raises(GatewayError) as e:
        t.feed(SSEEvent(None, orjson.dumps({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})))
    assert (e.value.status, e.value.code) == (400, "content_filter")


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]"])
def test_malformed_frames_are_bad_responses(data):
    with pytest.raises(GatewayError) as e:
        translator().feed(SSEEvent(None, data))
    assert e.value.status == 502 and e.value.code == "upstream_bad_response"


def test_completions_stream():
    t = translator(COMPLETIONS, include_usage=True)
    chunks, finished = run(t, sse(STREAM), 6)
    assert finished
    assert all(c["object"] == "text_completion" and c["id"].startswith("cmpl-") for c in chunks)
    texts = [c["choices"][0]["text"] for c in chunks if c["choices"]]
    assert "".join(texts) == "Once upon a time."
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 15


def test_completion_logprob_offsets_run_across_chunks():
    def lp_frame(tok: str, finish: str | None = None) -> dict:
        f = frame(tok, finish)
        f["candidates"][0]["logprobsResult"] = {
            "topCandidates": [{"candidates": [{"token": tok, "logProbability": -0.5}]}],
            "chosenCandidates": [{"token": tok, "logProbability": -0.5}],
        }
        return f

    chunks, _ = run(translator(COMPLETIONS), sse([lp_frame("Hi"), lp_frame(" you", "STOP")]), 50)
    offsets = [c["choices"][0]["logprobs"]["text_offset"] for c in chunks]
    assert offsets == [[0], [2]]
