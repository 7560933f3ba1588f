"""The Fireworks dialect on plain dicts, checked against Fireworks' own documentation.

Golden sources (each test names its own):
- Fireworks' "Create Completion" reference,
  https://docs.fireworks.ai/api-reference/post-completions: Bearer auth, `images`, `top_k`,
  `response_format` with `schema`, `context_length_exceeded_behavior`, usage in the very last
  streamed chunk, stop sequences kept in the text
- https://docs.fireworks.ai/api-reference/post-chatcompletions: the chat endpoint and its extras
- https://docs.fireworks.ai/guides/querying-text-models: base URL and model/deployment ids
"""

from __future__ import annotations

import orjson
import pytest

from gateway.errors import GatewayError
from providers.base import CHAT, COMPLETIONS, Target
from providers.fireworks import FireworksAdapter, fireworks_model
from tests.unit.providers.fireworks import FIREWORKS, KEY

adapter, ctx, run_stream = FIREWORKS.adapter, FIREWORKS.ctx, FIREWORKS.run_stream


def test_golden_default_base_url_and_bearer():
    # https://docs.fireworks.ai/guides/querying-text-models: base_url https://api.fireworks.ai/inference/v1
    req = adapter().build_request(
        CHAT, {"model": "x", "messages": [{"role": "user", "content": "hi"}]}, Target("deepseek-v3p1"), ctx()
    )
    assert req.url == "https://api.fireworks.ai/inference/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert orjson.loads(req.body)["model"] == "accounts/fireworks/models/deepseek-v3p1"
    own = adapter(base_url="http://127.0.0.1:9/inference/v1").build_request(
        COMPLETIONS, {"model": "x", "prompt": "a"}, Target("m"), ctx()
    )
    assert own.url == "http://127.0.0.1:9/inference/v1/completions"


@pytest.mark.parametrize(
    ("name", "model_id"),
    [
        ("llama-v3p1-8b-instruct", "accounts/fireworks/models/llama-v3p1-8b-instruct"),
        ("accounts/fireworks/models/llama-v3p1-8b-instruct", "accounts/fireworks/models/llama-v3p1-8b-instruct"),
        ("accounts/acme/models/my-ft", "accounts/acme/models/my-ft"),
        # A dedicated deployment, as the "Querying dedicated deployments" guide writes it.
        (
            "accounts/fireworks/models/deepseek-v3p1#accounts/acme/deployments/abc",
            "accounts/fireworks/models/deepseek-v3p1#accounts/acme/deployments/abc",
        ),
        ("accounts/acme/deployments/abc", "accounts/acme/deployments/abc"),
    ],
)
def test_model_ids(name, model_id):
    assert fireworks_model(name) == model_id


def test_native_overflow():
    assert FireworksAdapter.capabilities.native_overflow is True


def test_golden_extras_are_forwarded_untouched():
    # Seed 001 / post-completions: images, top_k, response_format with schema,
    # context_length_exceeded_behavior; post-chatcompletions lists the other sampling extras.
    extras = {
        "images": ["data:image/jpeg;base64,/9j/4AAQ"],
        "top_k": 40,
        "min_p": 0.05,
        "typical_p": 0.9,
        "repetition_penalty": 1.1,
        "mirostat_target": 5.0,
        "mirostat_lr": 0.1,
        "response_format": {
            "type": "json_object",
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
        },
        "context_length_exceeded_behavior": "error",
        "prompt_cache_max_len": 0,
        "raw_output": True,
        "echo": True,
        "ignore_eos": False,
        "perf_metrics_in_response": True,
        "stop": ["\n\n"],
    }
    body = {"model": "fireworks/llama-v3p1-8b-instruct", "prompt": "Describe <image>", "max_tokens": 16, **extras}
    req = adapter().build_request(COMPLETIONS, dict(body), Target("llama-v3p1-8b-instruct"), ctx())
    sent = orjson.loads(req.body)
    assert {k: sent[k] for k in extras} == extras
    assert sent["model"] == "accounts/fireworks/models/llama-v3p1-8b-instruct"


def stream(chunks: list[dict]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


BASE = {
    "id": "0f8d6a52-8e5b-4a34-9d2a-1e3c1b6e0e47",
    "object": "chat.completion.chunk",
    "created": 1730000000,
    "model": "accounts/fireworks/models/llama-v3p1-8b-instruct",
}
USAGE = {"prompt_tokens": 12, "total_tokens": 15, "completion_tokens": 3}

# Seed 001: "For streaming responses, usage field is included in the very last response chunk
# returned" -- the last chunk carries the finish_reason and its choices as well.
CHAT_STREAM = stream(
    [
        {**BASE, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}], "usage": None},
        {**BASE, "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}], "usage": None},
        {**BASE, "choices": [{"index": 0, "delta": {"content": " there"}, "finish_reason": None}], "usage": None},
        {**BASE, "choices": [{"index": 0, "delta": {"content": "!"}, "finish_reason": "stop"}], "usage": USAGE},
    ]
)


@pytest.mark.parametrize("include", [False, True])
def test_golden_last_chunk_usage(include):
    chunks, tr = run_stream(CHAT_STREAM, ctx(include_usage=include), 7)
    assert tr.finished is True and tr.usage == USAGE
    last = chunks[-1]
    # The client still gets the last chunk's content and finish_reason...
    assert last["choices"] == [{"index": 0, "delta": {"content": "!"}, "finish_reason": "stop"}]
    assert "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks) == "Hello there!"
    assert all(ch["model"] == "fireworks/llama-v3p1-8b-instruct" for ch in chunks)
    # ...and usage on it only if it asked.
    if include:
        assert last["usage"] == USAGE
    else:
        assert all("usage" not in ch for ch in chunks)


def test_golden_completions_stream_last_chunk_and_stop_kept():
    base = {**BASE, "object": "text_completion"}
    raw = stream(
        [
            {**base, "choices": [{"index": 0, "text": "1, 2,", "logprobs": None, "finish_reason": None}]},
            # Seed 001: "The returned text will contain the stop sequence." -- passed through as is.
            {
                **base,
                "choices": [{"index": 0, "text": " 3\n\n", "logprobs": None, "finish_reason": "stop"}],
                "usage": USAGE,
            },
        ]
    )
    chunks, tr = run_stream(raw, ctx(), 5, COMPLETIONS)
    assert "".join(ch["choices"][0]["text"] for ch in chunks) == "1, 2, 3\n\n"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and "usage" not in chunks[-1]
    assert tr.usage == USAGE


def test_errors_keep_status_and_message():
    err = adapter().parse_error(
        400,
        b'{"error":{"object":"error","type":"invalid_request_error","message":"The prompt is too long: 140000, model maximum context length: 131072"}}',
    )
    assert isinstance(err, GatewayError) and err.status == 400
    assert err.message == "fireworks: The prompt is too long: 140000, model maximum context length: 131072"
    assert err.type == "invalid_request_error"
