"""Cohere through the running gateway, driven by the official OpenAI SDK.

The upstream is tests/e2e/conftest.py's ``upstream`` for the cohere dialect (``MockUpstream("cohere")``).
Each test checks what it received (URL, headers, body) and what the client got back.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import openai
import orjson
import pytest

from simulators.model import embed
from tests.e2e.conftest import UPSTREAM_KEY, assert_credentials


@pytest.fixture(scope="module")
def dialect() -> str:
    return "cohere"


@pytest.fixture
def gateway_config(gateway_config: dict[str, Any]) -> dict[str, Any]:
    gateway_config["providers"]["cohere"]["retries"] = 0
    return gateway_config


def test_cohere_chat(client, upstream):
    up = upstream.app
    r = client.chat.completions.create(
        model="cohere/command-a-03-2025",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "one two three"}],
        temperature=0.3,
        top_p=1.0,
    )
    assert r.choices[0].message.content == "one two three"
    assert r.choices[0].finish_reason == "stop"
    # usage.tokens: 5 words of prompt plus the mock's 7-token preamble.
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (12, 3)
    req = up.requests[-1]
    assert req["path"] == "/v2/chat"
    assert req["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert_credentials(req["headers"])
    assert req["body"] == {
        "model": "command-a-03-2025",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "one two three"}],
        "temperature": 0.3,
        "p": 0.99,
    }


def test_cohere_stream_with_usage(client, upstream):
    up = upstream.app
    chunks = list(
        client.chat.completions.create(
            model="cohere/command-a-03-2025",
            messages=[{"role": "user", "content": "a b c d"}],
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "a b c"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert up.requests[-1]["body"]["stream"] is True and up.requests[-1]["body"]["max_tokens"] == 3


def test_cohere_stop_sequence(client):
    r = client.chat.completions.create(
        model="cohere/command-a-03-2025", messages=[{"role": "user", "content": "one two STOP three"}], stop=["STOP"]
    )
    assert r.choices[0].message.content.strip() == "one two" and r.choices[0].finish_reason == "stop"


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "gets the weather of a given location",
            "parameters": {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]},
        },
    }
]


def test_cohere_tool_round_trip(client, upstream):
    up = upstream.app
    c = client
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Toronto"}]
    r = c.chat.completions.create(model="cohere/command-a-03-2025", messages=messages, tools=TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and orjson.loads(call.function.arguments) == {"input": "Toronto"}
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "20 degrees"})
    final = c.chat.completions.create(model="cohere/command-a-03-2025", messages=messages, tools=TOOLS)
    assert final.choices[0].message.content == "20 degrees" and final.choices[0].finish_reason == "stop"
    sent = up.requests[-1]["body"]["messages"]
    assert sent[1]["role"] == "assistant" and sent[1]["tool_calls"][0]["id"] == call.id
    assert sent[1]["tool_plan"] == "I will call get_weather."
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "20 degrees"}


def test_cohere_streamed_tool_call(client):
    chunks = list(
        client.chat.completions.create(
            model="cohere/command-a-03-2025", messages=[{"role": "user", "content": "Madrid"}], tools=TOOLS, stream=True
        )
    )
    args = "".join(tc.function.arguments or "" for ch in chunks for tc in ch.choices[0].delta.tool_calls or ())
    assert orjson.loads(args) == {"input": "Madrid"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("fmt", [None, "float"])
def test_cohere_embeddings(client, upstream, fmt):
    up = upstream.app
    kwargs: dict[str, Any] = {"encoding_format": fmt} if fmt else {}  # the SDK asks for base64 by default
    r = client.embeddings.create(model="cohere/embed-v4.0", input=["hello", "goodbye"], dimensions=8, **kwargs)
    assert [d.index for d in r.data] == [0, 1]
    for d, text in zip(r.data, ["hello", "goodbye"], strict=True):
        expected = struct.unpack("<8f", struct.pack("<8f", *embed(text, 8)))  # float32, as Cohere sends
        assert d.embedding == pytest.approx(expected, rel=1e-6)
    assert r.usage.prompt_tokens == 2
    body = up.requests[-1]["body"]
    assert body == {
        "model": "embed-v4.0",
        "texts": ["hello", "goodbye"],
        "input_type": "search_document",
        "embedding_types": ["float"],
        "output_dimension": 8,
    }


def test_cohere_embeddings_base64_and_input_type(client, upstream):
    up = upstream.app
    r = client.embeddings.create(
        model="cohere/embed-v4.0",
        input="hello",
        dimensions=4,
        encoding_format="base64",
        extra_body={"input_type": "search_query"},
    )
    raw = base64.b64decode(r.data[0].embedding)
    assert struct.unpack("<4f", raw) == pytest.approx(embed("hello", 4), rel=1e-6)
    assert up.requests[-1]["body"]["input_type"] == "search_query"


def test_cohere_legacy_completions(client, upstream):
    up = upstream.app
    r = client.completions.create(model="cohere/command-a-03-2025", prompt="alpha beta gamma", max_tokens=2)
    assert r.choices[0].text == "alpha beta" and r.choices[0].finish_reason == "length"
    assert r.object == "text_completion"
    assert up.requests[-1]["body"]["messages"] == [{"role": "user", "content": "alpha beta gamma"}]


def test_cohere_unsupported_parameter_never_reaches_upstream(client, upstream):
    up = upstream.app
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="cohere/command-a-03-2025", messages=[{"role": "user", "content": "x"}], n=2
        )
    assert e.value.param == "n" and e.value.code == "unsupported_parameter"
    assert not up.requests


def test_cohere_upstream_error_keeps_status_and_message(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="cohere/command-a-03-2025", messages=[{"role": "tool", "tool_call_id": "", "content": "orphan"}]
        )
    assert e.value.status_code == 400
    assert e.value.body["message"] == "cohere: invalid request: messages[0].tool_call_id is required"
