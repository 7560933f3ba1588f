"""The simulated Anthropic Messages API (``simulators/anthropic.py``): ``POST /v1/messages/count_tokens`` and the
deterministic tool use, checked with the official ``anthropic`` SDK over ASGI."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anthropic
import httpx
import pytest

from simulators.anthropic import MAX_OUTPUT_WORDS
from simulators.server import MockUpstream
from tests.unit.simulators import BASE, http_client

jsonschema = pytest.importorskip("jsonschema")

MODEL = "claude-sonnet-4-5"
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 2},
        },
        "required": ["location", "unit", "days"],
    },
}
CLOCK = {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}}
HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}


@pytest.fixture
def app() -> MockUpstream:
    return MockUpstream("anthropic")


def sdk(app: MockUpstream, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key="sk-ant-test", base_url=BASE, http_client=http_client(app), max_retries=0, default_headers=headers
    )


@pytest.fixture
def client(app: MockUpstream) -> anthropic.Anthropic:
    # Recent SDKs send the key as ``Authorization: Bearer``; the simulator wants ``x-api-key`` (what the gateway sends).
    return sdk(app, **{"x-api-key": "sk-ant-test"})


def post(app: MockUpstream, path: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
            return await c.post(path, json=body, headers=headers)

    return asyncio.run(go())


def words_of_tools(tools: list[dict[str, Any]]) -> int:
    return len(json.dumps(tools, separators=(",", ":")).split())


def test_count_tokens_matches_the_usage_of_messages_create(client):
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "what is the weather"},
            {"role": "assistant", "content": [{"type": "text", "text": "in which city?"}]},
            {"role": "user", "content": [{"type": "text", "text": "Paris"}]},
        ],
        "tools": [WEATHER, CLOCK],
    }
    counted = client.messages.count_tokens(**kwargs)
    assert counted.input_tokens == 3 + 4 + 3 + 1 + words_of_tools([WEATHER, CLOCK])
    message = client.messages.create(max_tokens=64, **kwargs)
    assert message.usage.input_tokens == counted.input_tokens


def test_count_tokens_without_tools_counts_system_and_messages(client, app):
    counted = client.messages.count_tokens(
        model=MODEL,
        system=[{"type": "text", "text": "Be brief."}],
        messages=[{"role": "user", "content": "hello there"}],
    )
    assert counted.input_tokens == 4
    req = app.requests[-1]
    assert (req["path"], req["headers"]["x-api-key"]) == ("/v1/messages/count_tokens", "sk-ant-test")
    assert req["headers"]["anthropic-version"]  # the SDK's own version date


def test_count_tokens_checks_headers_like_messages(app):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    ok = post(app, "/v1/messages/count_tokens", body, HEADERS)
    assert (ok.status_code, ok.json()) == (200, {"input_tokens": 1})
    no_key = post(app, "/v1/messages/count_tokens", body, {"anthropic-version": "2023-06-01"})
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"
    no_version = post(app, "/v1/messages/count_tokens", body, {"x-api-key": "k"})
    assert no_version.status_code == 400 and no_version.json()["type"] == "error"
    assert "anthropic-version" in no_version.json()["error"]["message"]


def test_count_tokens_validates_the_body(app):
    cases = [
        ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}, "max_tokens"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        (
            {"model": MODEL, "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
            "messages.1",
        ),
    ]
    for body, field in cases:
        r = post(app, "/v1/messages/count_tokens", body, HEADERS)
        assert r.status_code == 400
        assert r.json()["error"]["type"] == "invalid_request_error" and r.json()["error"]["message"].startswith(field)
    assert post(app, "/v1/messages/count", {}, HEADERS).status_code == 404


def test_sdk_count_tokens_errors_are_typed(app, client):
    with pytest.raises(anthropic.AuthenticationError):  # no x-api-key header
        sdk(app).messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Extra inputs are not permitted"):
        client.messages.count_tokens(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body={"max_tokens": 10}
        )


def test_a_tool_named_in_the_last_user_text_is_used(client):
    m = client.messages.create(
        model=MODEL,
        max_tokens=64,
        tools=[CLOCK, WEATHER],
        messages=[{"role": "user", "content": "Paris, via get_weather"}],
    )
    (block,) = m.content
    assert (m.stop_reason, block.type, block.name) == ("tool_use", "tool_use", "get_weather")
    jsonschema.validate(block.input, WEATHER["input_schema"])
    assert block.input == {"location": "Paris, via get_weather", "unit": "celsius", "days": 2}
    plain = client.messages.create(
        model=MODEL, max_tokens=64, tools=[WEATHER], messages=[{"role": "user", "content": "hi"}]
    )
    assert (plain.stop_reason, plain.content[0].text) == ("end_turn", "hi")
    none = client.messages.create(
        model=MODEL,
        max_tokens=64,
        tools=[WEATHER],
        tool_choice={"type": "none"},
        messages=[{"role": "user", "content": "get_weather"}],
    )
    assert none.content[0].type == "text"


def test_after_a_tool_result_the_answer_is_text(client):
    first = client.messages.create(
        model=MODEL, max_tokens=64, tools=[WEATHER], messages=[{"role": "user", "content": "use get_weather"}]
    )
    call = first.content[0]
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, says get_weather"}
    second = client.messages.create(
        model=MODEL,
        max_tokens=64,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "use get_weather"},
            {"role": "assistant", "content": [call.model_dump()]},
            {"role": "user", "content": [result]},
        ],
    )
    assert (second.stop_reason, second.content[0].type, second.content[0].text) == (
        "end_turn",
        "text",
        "sunny, says get_weather",
    )


def test_streamed_tool_use_by_name(client):
    with client.messages.stream(
        model=MODEL, max_tokens=64, tools=[WEATHER], messages=[{"role": "user", "content": "Rome get_weather"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    jsonschema.validate(final.content[0].input, WEATHER["input_schema"])


def test_echo_is_capped_whatever_max_tokens_says(client):
    m = client.messages.create(model=MODEL, max_tokens=8192, messages=[{"role": "user", "content": "w " * 10_000}])
    assert (m.usage.input_tokens, m.usage.output_tokens, m.stop_reason) == (10_000, MAX_OUTPUT_WORDS, "max_tokens")
    assert len(m.content[0].text.split()) == MAX_OUTPUT_WORDS
