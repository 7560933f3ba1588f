"""Azure OpenAI through the running gateway, driven by the official OpenAI SDK.

The upstream is tests/e2e/conftest.py's ``upstream`` for the azure dialect: a ``Recorder`` that
replays Azure's documented shapes. Each test checks what it received (URL, headers, body) and what the
client got back.
"""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest

from tests.e2e.conftest import UPSTREAM_KEY, Upstream, assert_credentials, base_config
from tests.support.recorder import sse


@pytest.fixture(scope="module")
def dialect() -> str:
    return "azure"


@pytest.fixture
def gateway_config(upstream: Upstream) -> dict[str, Any]:
    cfg = base_config()
    common = {"kind": "azure", "api_key": UPSTREAM_KEY, "timeout": 5, "retries": 0}
    cfg["providers"]["azure"] = {**common, "base_url": upstream.url + "/openai", "api_version": "2024-10-21"}
    cfg["providers"]["azurev1"] = {**common, "base_url": upstream.url + "/openai/v1/"}
    return cfg


AZURE_RESPONSE = {
    "id": "chatcmpl-8IMI4HzcmcK6I77vpOJCPt0Vcf8zJ",
    "object": "chat.completion",
    "created": 1699386280,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Example model response"},
            "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}},
        }
    ],
    "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    "prompt_filter_results": [
        {"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}}}
    ],
}


def test_azure_classic_chat(client, upstream):
    rec = upstream.app
    rec.reply = (200, "application/json", orjson.dumps(AZURE_RESPONSE))
    r = client.chat.completions.create(model="azure/gpt-4o-prod", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "Example model response"
    assert r.model == "azure/gpt-4o-prod" and r.usage.total_tokens == 14
    assert r.prompt_filter_results[0]["prompt_index"] == 0  # Azure's documented field is kept
    req = rec.requests[-1]
    assert req["path"] == "/openai/deployments/gpt-4o-prod/chat/completions"
    assert req["query"] == "api-version=2024-10-21"
    assert req["headers"]["api-key"] == UPSTREAM_KEY and "authorization" not in req["headers"]
    assert_credentials(req["headers"])
    assert req["body"]["messages"] == [{"role": "user", "content": "hi"}]


def test_azure_v1_form(client, upstream):
    rec = upstream.app
    rec.reply = (200, "application/json", orjson.dumps(AZURE_RESPONSE))
    client.chat.completions.create(model="azurev1/gpt-4o-prod", messages=[{"role": "user", "content": "hi"}])
    req = rec.requests[-1]
    assert req["path"] == "/openai/v1/chat/completions" and req["query"] == ""
    assert req["body"]["model"] == "gpt-4o-prod" and req["headers"]["api-key"] == UPSTREAM_KEY


def test_azure_stream_with_annotation_chunks(client, upstream):
    rec = upstream.app
    base = {"id": "chatcmpl-8JCb", "object": "chat.completion.chunk", "created": 1699587397, "model": "gpt-35-turbo"}
    empty = {"id": "", "object": "", "created": 0, "model": ""}
    safe = {"hate": {"filtered": False, "severity": "safe"}}
    rec.reply = sse(
        [
            {
                **empty,
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": safe}],
                "choices": [],
                "usage": None,
            },
            {**base, "choices": [{"index": 0, "finish_reason": None, "delta": {"role": "assistant"}}], "usage": None},
            {**base, "choices": [{"index": 0, "finish_reason": None, "delta": {"content": "Hey"}}], "usage": None},
            {**empty, "choices": [{"index": 0, "finish_reason": None, "content_filter_results": safe}], "usage": None},
            {**base, "choices": [{"index": 0, "finish_reason": None, "delta": {"content": " Jude"}}], "usage": None},
            {
                **empty,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "content_filter",
                        "content_filter_results": {"protected_material_text": {"detected": True, "filtered": True}},
                    }
                ],
                "usage": None,
            },
            {**base, "choices": [], "usage": {"prompt_tokens": 14, "completion_tokens": 2, "total_tokens": 16}},
        ]
    )
    chunks = list(
        client.chat.completions.create(
            model="azure/gpt-35-turbo",
            messages=[{"role": "user", "content": "Tell me the lyrics to Hey Jude."}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    # The SDK indexes choices[0] on every chunk with choices: nothing here may lack a delta.
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "Hey Jude"
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices]
    assert finishes[-1] == "content_filter"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 16
    assert {ch.id for ch in chunks} == {"chatcmpl-8JCb"}


def test_azure_content_filter_error(client, upstream):
    rec = upstream.app
    err = {
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {"hate": {"filtered": True, "severity": "high"}},
            },
        }
    }
    rec.reply = (400, "application/json", orjson.dumps(err))
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="azure/gpt-4o-prod", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "content_filter"
    assert "content management policy" in e.value.message


def test_azure_deployment_cannot_escape_its_path(client, upstream):
    rec = upstream.app
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="azure/../../admin", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "invalid_deployment"
    assert rec.requests == []
