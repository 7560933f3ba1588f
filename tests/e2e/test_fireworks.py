"""Fireworks through the running gateway, driven by the official OpenAI SDK.

The upstream is tests/e2e/conftest.py's ``upstream`` for the fireworks dialect: a ``Recorder`` that
replays Fireworks' documented shapes. Each test checks what it received (URL, headers, body) and what
the client got back.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.e2e.conftest import UPSTREAM_KEY, Upstream, assert_credentials
from tests.support.recorder import sse


@pytest.fixture(scope="module")
def dialect() -> str:
    return "fireworks"


@pytest.fixture
def gateway_config(gateway_config: dict[str, Any], upstream: Upstream) -> dict[str, Any]:
    gateway_config["providers"]["fireworks"].update(base_url=upstream.url + "/inference/v1", retries=0)
    gateway_config["models"].append({"name": "fireworks/llama-v3p1-8b-instruct", "context_window": 131072})
    return gateway_config


FW_BASE = {
    "id": "fw-1",
    "object": "chat.completion.chunk",
    "created": 1730000000,
    "model": "accounts/fireworks/models/llama-v3p1-8b-instruct",
}
FW_USAGE = {"prompt_tokens": 12, "total_tokens": 15, "completion_tokens": 3}
FW_STREAM = [
    {**FW_BASE, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}], "usage": None},
    {**FW_BASE, "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}], "usage": None},
    {**FW_BASE, "choices": [{"index": 0, "delta": {"content": " there!"}, "finish_reason": "stop"}], "usage": FW_USAGE},
]


@pytest.mark.parametrize("include", [False, True])
def test_fireworks_stream_last_chunk_usage(client, upstream, include):
    rec = upstream.app
    rec.reply = sse(FW_STREAM)
    kwargs: dict[str, Any] = {"stream_options": {"include_usage": True}} if include else {}
    chunks = list(
        client.chat.completions.create(
            model="fireworks/llama-v3p1-8b-instruct",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_body={"top_k": 40, "context_length_exceeded_behavior": "error"},
            **kwargs,
        )
    )
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "Hello there!"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert (chunks[-1].usage.total_tokens == 15) if include else all(ch.usage is None for ch in chunks)
    req = rec.requests[-1]
    assert req["path"] == "/inference/v1/chat/completions"
    assert req["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert_credentials(req["headers"])
    body = req["body"]
    assert body["model"] == "accounts/fireworks/models/llama-v3p1-8b-instruct"
    assert body["top_k"] == 40 and body["context_length_exceeded_behavior"] == "error"
    assert body["stream_options"] == {"include_usage": True}


def test_fireworks_completions_extras(client, upstream):
    rec = upstream.app
    reply = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1730000000,
        "model": "accounts/fireworks/models/llama-v3p1-8b-instruct",
        "choices": [{"index": 0, "text": '{"a": "b"}', "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    }
    rec.reply = (200, "application/json", orjson.dumps(reply))
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    r = client.completions.create(
        model="fireworks/accounts/acme/models/my-ft",
        prompt="<image> as JSON:",
        max_tokens=20,
        extra_body={
            "images": ["data:image/jpeg;base64,/9j/4AAQ"],
            "response_format": {"type": "json_object", "schema": schema},
        },
    )
    assert r.choices[0].text == '{"a": "b"}' and r.model == "fireworks/accounts/acme/models/my-ft"
    body = rec.requests[-1]["body"]
    assert rec.requests[-1]["path"] == "/inference/v1/completions"
    assert body["model"] == "accounts/acme/models/my-ft"
    assert body["images"] == ["data:image/jpeg;base64,/9j/4AAQ"]
    assert body["response_format"] == {"type": "json_object", "schema": schema}
