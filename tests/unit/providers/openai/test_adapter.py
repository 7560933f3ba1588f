"""The OpenAI dialect on plain dicts, with OpenAI's own documented examples.

Response and chunk examples: https://platform.openai.com/docs/api-reference/chat/create and
https://platform.openai.com/docs/api-reference/chat/streaming (the "Example" blocks);
include_usage semantics: https://platform.openai.com/docs/api-reference/chat/create#chat-create-stream_options
"""

from __future__ import annotations

import orjson
import pytest

from gateway.config import ProviderConfig
from gateway.errors import GatewayError
from providers.base import CHAT, COMPLETIONS, EMBEDDINGS, SSEEvent, Target
from providers.openai import OpenAIAdapter
from tests.unit.providers.openai import OPENAI

DOC_RESPONSE = {
    "id": "chatcmpl-123",
    "object": "chat.completion",
    "created": 1677652288,
    "model": "gpt-4o-mini",
    "system_fingerprint": "fp_44709d6fcb",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "\n\nHello there, how may I assist you today?"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
}

DOC_STREAM = (
    b'data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini", '
    b'"system_fingerprint": "fp_44709d6fcb", "choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n'
    b'data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini", '
    b'"system_fingerprint": "fp_44709d6fcb", "choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}\n\n'
    b'data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini", '
    b'"system_fingerprint": "fp_44709d6fcb", "choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini", '
    b'"system_fingerprint": "fp_44709d6fcb", "choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}\n\n'
    b"data: [DONE]\n\n"
)


adapter, ctx, run_stream = OPENAI.adapter, OPENAI.ctx, OPENAI.run_stream


def test_build_request_replaces_model_and_forces_stream_usage():
    a = adapter(headers={"OpenAI-Organization": "org-1"})
    body = {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hello!"}],
        "stream": True,
        "stream_options": {"include_usage": False},
        "seed": 7,
        "service_tier": "auto",
    }
    req = a.build_request(CHAT, body, Target("gpt-4o-mini"), ctx())
    sent = orjson.loads(req.body)
    assert req.url == "https://api.openai.com/v1/chat/completions" and req.method == "POST" and req.stream
    assert sent["model"] == "gpt-4o-mini" and sent["stream_options"] == {"include_usage": True}
    assert sent["seed"] == 7 and sent["service_tier"] == "auto"  # untouched passthrough
    assert req.headers["authorization"] == "Bearer sk-up" and req.headers["openai-organization"] == "org-1"
    assert a.build_request(COMPLETIONS, {"model": "x", "prompt": "a"}, Target("m"), ctx()).url.endswith(
        "/v1/completions"
    )
    assert a.build_request(EMBEDDINGS, {"model": "x", "input": "a"}, Target("m"), ctx()).url.endswith("/v1/embeddings")


def test_no_key_means_no_authorization_header():
    a = OpenAIAdapter("local", ProviderConfig(kind="openai", base_url="http://vllm:8000/v1"))
    assert "authorization" not in a.build_request(CHAT, {"model": "x", "messages": []}, Target("m"), ctx()).headers


def test_parse_documented_response():
    out = adapter().parse_response(CHAT, orjson.dumps(DOC_RESPONSE), ctx())
    assert out["model"] == "openai/gpt-4o-mini"
    assert out["usage"] == DOC_RESPONSE["usage"] and out["choices"] == DOC_RESPONSE["choices"]


@pytest.mark.parametrize("payload", [b"not json", b"[]", b'{"object": "chat.completion"}'])
def test_bad_response_is_502(payload):
    with pytest.raises(GatewayError) as e:
        adapter().parse_response(CHAT, payload, ctx())
    assert e.value.status == 502 and e.value.code == "upstream_bad_response"


@pytest.mark.parametrize("step", [None, 1, 7])
def test_documented_stream_with_usage(step):
    chunks, t = run_stream(DOC_STREAM, ctx(include_usage=True), step)
    assert t.finished and t.usage == {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}
    assert len(chunks) == 4 and all(c["model"] == "openai/gpt-4o-mini" for c in chunks)
    assert chunks[1]["choices"][0]["delta"]["content"] == "Hello" and chunks[-1]["choices"] == []


def test_usage_chunk_hidden_from_client_that_did_not_ask():
    chunks, t = run_stream(DOC_STREAM, ctx(include_usage=False))
    assert len(chunks) == 3 and all("usage" not in c for c in chunks)
    assert t.usage["completion_tokens"] == 1  # still accounted


def test_usage_null_stripped_when_not_asked_and_kept_when_asked():
    raw = b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}'
    t = adapter().stream_translator(CHAT, ctx(include_usage=False))
    assert "usage" not in orjson.loads(t.feed(SSEEvent(None, raw))[0])
    t = adapter().stream_translator(CHAT, ctx(include_usage=True))
    assert orjson.loads(t.feed(SSEEvent(None, raw))[0])["usage"] is None


def test_vllm_usage_chunk_with_null_choices():
    raw = b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":null,"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}'
    t = adapter().stream_translator(CHAT, ctx(include_usage=False))
    assert t.feed(SSEEvent(None, raw)) == [] and t.usage["total_tokens"] == 5


def test_model_rewrite_does_not_touch_content():
    raw = b'{"id":"c","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"the \\"model\\":\\"x\\" text"}}]}'
    out = orjson.loads(adapter().stream_translator(CHAT, ctx()).feed(SSEEvent(None, raw))[0])
    assert out["model"] == "openai/gpt-4o-mini" and out["choices"][0]["delta"]["content"] == 'the "model":"x" text'


def test_error_event_mid_stream_raises():
    t = adapter().stream_translator(CHAT, ctx())
    with pytest.raises(GatewayError) as e:
        t.feed(SSEEvent(None, b'{"error": {"message": "overloaded", "type": "server_error", "code": null}}'))
    assert "overloaded" in e.value.message


def test_parse_error_shapes():
    a = adapter()
    e = a.parse_error(
        400,
        orjson.dumps(
            {"error": {"message": "bad thing", "type": "invalid_request_error", "param": "messages", "code": "x"}}
        ),
    )
    assert (e.status, e.message, e.type, e.param, e.code) == (
        400,
        "openai: bad thing",
        "invalid_request_error",
        "messages",
        "x",
    )
    assert a.parse_error(500, b'{"error": "vllm says no"}').message == "openai: vllm says no"
    assert a.parse_error(404, b'{"message": "no such model"}').message == "openai: no such model"
    e = a.parse_error(502, b"<html>Bad Gateway</html>")
    assert e.status == 502 and "Bad Gateway" in e.message
