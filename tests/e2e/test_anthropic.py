"""The OpenAI SDK -> the real gateway -> the simulated Anthropic Messages API, all under uvicorn on loopback.

``upstream``, ``gateway`` and ``client`` are tests/e2e/conftest.py's, for the anthropic dialect.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.e2e.conftest import CLIENT_KEY, UPSTREAM_KEY, Upstream

PROVIDER_KEY = UPSTREAM_KEY  # the key gateway_config gives the anthropic provider
MODEL = "anthropic/claude-sonnet-4-5"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


@pytest.fixture(scope="module")
def dialect() -> str:
    return "anthropic"


def last_request(upstream: Upstream) -> dict[str, Any]:
    _, app = upstream
    req = app.requests[-1]
    assert req["path"] == "/v1/messages"
    assert req["headers"]["x-api-key"] == PROVIDER_KEY
    assert req["headers"]["anthropic-version"] == "2023-06-01"
    assert CLIENT_KEY not in json.dumps(req)  # the client's key never reaches the upstream
    assert req["body"]["model"] == "claude-sonnet-4-5"
    return req["body"]


def test_chat(client, upstream):
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}],
    )
    assert r.choices[0].message.content == "hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.model == MODEL
    assert r.id.startswith("msg_")
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (4, 2, 6)
    body = last_request(upstream)
    assert body["system"] == "Be brief."
    assert body["messages"] == [{"role": "user", "content": "hello there"}]
    assert body["max_tokens"] == 4096


def test_max_tokens_and_stop(client, upstream):
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "one two three four"}], max_completion_tokens=2
    )
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("one two ", "length")
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "one two three"}], stop="three"
    )
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("one two ", "stop")
    assert last_request(upstream)["stop_sequences"] == ["three"]


def test_stream_with_usage(client, upstream):
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "a b c"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b c"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 3)
    body = last_request(upstream)
    assert body["stream"] is True
    assert "stream_options" not in body


def test_tools(client, upstream):
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Paris"}],
        tools=[WEATHER],
        tool_choice="required",
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    body = last_request(upstream)
    assert body["tool_choice"] == {"type": "any"}
    assert body["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]

    # The tool's result goes back; the upstream sees alternating turns with the result in a user turn.
    r2 = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "Paris"},
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
        tools=[WEATHER],
    )
    assert r2.choices[0].message.content == "sunny"
    assert [m["role"] for m in last_request(upstream)["messages"]] == ["user", "assistant", "user"]


def test_streamed_tool_call(client, upstream):
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Rome"}],
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            stream=True,
        )
    )
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id and deltas[0].function.name == "get_weather"
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"location": "Rome"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert last_request(upstream)["tool_choice"] == {"type": "tool", "name": "get_weather"}


def test_structured_output(client, upstream):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Oslo"}],
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema, "strict": True}},
    )
    assert json.loads(r.choices[0].message.content) == {"city": "Oslo"}
    assert last_request(upstream)["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "JSON please"}], response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(r.choices[0].message.content), dict)
    assert r.choices[0].finish_reason == "stop"


def test_completions(client, upstream):
    r = client.completions.create(model=MODEL, prompt="say it back", max_tokens=2)
    assert (r.choices[0].text, r.choices[0].finish_reason) == ("say it ", "length")
    chunks = list(
        client.completions.create(model=MODEL, prompt="x y", stream=True, stream_options={"include_usage": True})
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "x y"
    assert chunks[-1].usage.completion_tokens == 2
    assert last_request(upstream)["messages"] == [{"role": "user", "content": "x y"}]


def test_unsupported_parameters_are_400_before_any_upstream_call(client, upstream):
    _, app = upstream
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], n=2)
    assert e.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], temperature=1.5)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=MODEL, input="hi")
    assert len(app.requests) == 0


def test_overloaded_upstream_is_503(client):
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "[[overloaded]]"}])
    assert e.value.status_code == 503
    assert e.value.body["type"] == "overloaded_error"


def test_error_event_mid_stream_reaches_the_client(client):
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "first [[stream-error]]"}], stream=True
    )
    seen: list[str] = []
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == "first "
    assert "Overloaded" in str(e.value)
