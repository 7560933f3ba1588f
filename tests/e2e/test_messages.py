"""The Anthropic SDK -> the real gateway -> native Anthropic, translated OpenAI and Gemini upstreams.

Shapes are checked by the official ``anthropic`` SDK itself (it parses every answer and event into
its models and raises its own error classes by status), and the simulated upstreams record what
they received.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from simulators.faults import FaultUpstream
from simulators.server import MockUpstream
from tests.e2e.conftest import CLIENT_KEY, OTHER_KEY, UPSTREAM_KEY, base_config
from tests.support.servers import ServerThread

ANT_KEY = "sk-ant-provider-secret"
GEM_KEY = "gem-provider-secret"
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, tuple[ServerThread, Any]]]:
    apps = {"anthropic": MockUpstream("anthropic"), "openai": MockUpstream("openai"), "gemini": MockUpstream("gemini")}
    faulty = FaultUpstream()
    servers = {name: ServerThread(app).start() for name, app in apps.items()}
    servers["faulty"] = ServerThread(faulty).start()
    yield {name: (servers[name], app) for name, app in [*apps.items(), ("faulty", faulty)]}
    for s in servers.values():
        s.stop()


@pytest.fixture
def gw(upstreams, gateway_for) -> ServerThread:
    for _, app in upstreams.values():
        app.requests.clear()
    cfg = base_config(upstreams["openai"][0].url)
    cfg["providers"]["anthropic"] = {
        "kind": "anthropic",
        "base_url": upstreams["anthropic"][0].url,
        "api_key": ANT_KEY,
        "timeout": 5,
        "retries": 0,
    }
    cfg["providers"]["gemini"] = {"kind": "gemini", "base_url": upstreams["gemini"][0].url, "api_key": GEM_KEY}
    cfg["providers"]["faulty"] = {
        "kind": "openai",
        "base_url": upstreams["faulty"][0].url + "/v1",
        "timeout": 5,
        "retries": 0,
    }
    cfg["models"].append({"name": "claude-via-openai", "deployments": [{"provider": "openai", "upstream": "gpt-4o"}]})
    cfg["keys"].append({"name": "limited", "key": "sk-test-limited", "limits": {"rpm": 1}})
    return gateway_for(cfg)


def client(gw: ServerThread, key: str = CLIENT_KEY, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, **kw)


def received(upstreams, name: str) -> dict[str, Any]:
    req = upstreams[name][1].requests[-1]
    assert CLIENT_KEY not in json.dumps(req)  # the client's key never reaches an upstream
    return req


# -- native: kind anthropic ------------------------------------------------------------------------
def test_native_create_relays_the_body_as_sent(gw, upstreams):
    body = {
        "model": "anthropic/claude-sonnet-4-5",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
        "metadata": {"user_id": "u-1"},
        "stop_sequences": ["END"],
    }
    m = client(gw).messages.create(
        **body, extra_headers={"anthropic-beta": "prompt-caching-2024-07-31", "anthropic-version": "2023-06-01"}
    )
    assert m.type == "message" and m.model == "anthropic/claude-sonnet-4-5"
    assert m.content[0].type == "text" and m.stop_reason == "end_turn"
    req = received(upstreams, "anthropic")
    assert req["path"] == "/v1/messages"
    assert req["headers"]["x-api-key"] == ANT_KEY
    assert req["headers"]["anthropic-version"] == "2023-06-01"
    assert req["headers"]["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert req["body"] == {**body, "model": "claude-sonnet-4-5"}  # only the model rewritten


def test_native_stream_and_usage_recorded(gw, upstreams):
    c = client(gw)
    with c.messages.stream(
        model="anthropic/claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "one two three"}]
    ) as s:
        types = [ev.type for ev in s]
        final = s.get_final_message()
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert final.model == "anthropic/claude-sonnet-4-5" and final.usage.output_tokens > 0
    assert received(upstreams, "anthropic")["body"]["stream"] is True
    usage = httpx.get(gw.url + "/v1/usage", headers={"authorization": f"Bearer {CLIENT_KEY}"}).json()
    per_model = usage["models"]["anthropic/claude-sonnet-4-5"]
    assert per_model["requests"] == 1 and per_model["prompt_tokens"] > 0 and per_model["completion_tokens"] > 0


def test_claude_code_shaped_request(gw, upstreams):
    """Claude Code's request: betas, session header, system blocks with cache_control, tools, metadata, stream."""
    headers = {
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14",
        "x-claude-code-session-id": "6f1c9a4e-session",
        "anthropic-version": "2023-06-01",
    }
    body = {
        "model": "anthropic/claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {"type": "text", "text": "Project instructions...", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "get_weather in Paris please"}]}],
        "tools": [WEATHER],
        "metadata": {"user_id": "user_abc_account__session_6f1c9a4e"},
    }
    with httpx.stream(
        "POST", gw.url + "/v1/messages", json=body, headers={**headers, "x-api-key": CLIENT_KEY}, timeout=10
    ) as r:
        text = r.read().decode()
    assert r.status_code == 200, text
    assert text.startswith("event: message_start") and "event: message_stop" in text
    req = received(upstreams, "anthropic")
    assert req["headers"]["anthropic-beta"] == headers["anthropic-beta"]
    assert req["body"] == {**body, "model": "claude-sonnet-4-5"}


# -- translated: OpenAI and Gemini upstreams ------------------------------------------------------
@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "claude-via-openai", "gemini/gemini-2.5-pro", "mock/echo"])
def test_translated_create_and_stream(gw, upstreams, model):
    c = client(gw)
    m = c.messages.create(
        model=model, max_tokens=64, system="Be brief.", messages=[{"role": "user", "content": "hello there"}]
    )
    assert m.model == model and m.role == "assistant" and m.content[0].text
    assert m.stop_reason == "end_turn" and m.usage.input_tokens > 0 and m.usage.output_tokens > 0
    with c.messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": "hello again"}]) as s:
        events = list(s)
        final = s.get_final_message()
    assert events[0].type == "message_start" and events[0].message.usage.input_tokens > 0
    assert final.content[0].text and final.stop_reason == "end_turn"
    indexes = [e.index for e in events if e.type == "content_block_start"]
    assert indexes == list(range(len(indexes)))


def test_translated_to_openai_carries_system_and_stop(gw, upstreams):
    client(gw).messages.create(
        model="openai/gpt-4o-mini",
        max_tokens=20,
        system="Be brief.",
        stop_sequences=["END"],
        messages=[{"role": "user", "content": "hi"}],
    )
    req = received(upstreams, "openai")
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    b = req["body"]
    assert b["messages"][0] == {"role": "system", "content": "Be brief."}
    assert b["stop"] == ["END"] and b["max_tokens"] == 20 and b["model"] == "gpt-4o-mini"


def test_max_tokens_cut_is_max_tokens(gw):
    m = client(gw).messages.create(
        model="mock/echo", max_tokens=2, messages=[{"role": "user", "content": "one two three four five"}]
    )
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 2


def test_tool_round_trip_translated(gw, upstreams):
    c = client(gw)
    c.messages.create(
        model="openai/gpt-4o-mini",
        max_tokens=64,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
    )
    b = received(upstreams, "openai")["body"]
    assert b["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": WEATHER["description"],
                "parameters": WEATHER["input_schema"],
            },
        }
    ]
    assert b["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    second = c.messages.create(
        model="openai/gpt-4o-mini",
        max_tokens=64,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"location": "Paris"}}
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny"}]},
        ],
    )
    msgs = received(upstreams, "openai")["body"]["messages"]
    call = msgs[1]["tool_calls"][0]
    assert call["id"] == "toolu_01" and json.loads(call["function"]["arguments"]) == {"location": "Paris"}
    assert msgs[2] == {"role": "tool", "tool_call_id": "toolu_01", "content": "sunny"}
    assert second.content[0].type == "text"


# -- count_tokens -----------------------------------------------------------------------------------
def test_count_tokens_translated_exact_and_estimated(gw):
    c = client(gw)
    msgs = [{"role": "user", "content": "count these words please"}]
    exact = c.messages.with_raw_response.count_tokens(model="openai/gpt-4o-mini", messages=msgs)
    assert exact.headers.get("x-switchyard-estimated") is None and exact.parse().input_tokens > 0
    est = c.messages.with_raw_response.count_tokens(model="gemini/gemini-2.5-pro", messages=msgs)
    assert est.headers.get("x-switchyard-estimated") == "true"
    assert est.parse().input_tokens >= exact.parse().input_tokens  # an upper bound, never an understatement


# -- errors in Anthropic's shape --------------------------------------------------------------------
def test_error_classes(gw):
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.AuthenticationError) as e:
        client(gw, key="wrong").messages.create(model="mock/echo", max_tokens=5, messages=msgs)
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError):
        client(gw).messages.create(model="nosuch/model", max_tokens=5, messages=msgs)
    with pytest.raises(anthropic.BadRequestError) as e:
        client(gw).messages.create(model="mock/echo", messages=msgs, max_tokens=-1)
    assert e.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.PermissionDeniedError):
        client(gw, key=OTHER_KEY).messages.create(model="openai/gpt-4o-mini", max_tokens=5, messages=msgs)
    limited = client(gw, key="sk-test-limited")
    limited.messages.create(model="mock/echo", max_tokens=5, messages=msgs)
    with pytest.raises(anthropic.RateLimitError):
        limited.messages.create(model="mock/echo", max_tokens=5, messages=msgs)
    with pytest.raises(anthropic.InternalServerError) as e:  # 529 is OverloadedError in newer SDKs
        client(gw).messages.create(model="faulty/status-503", max_tokens=5, messages=msgs)
    assert e.value.status_code == 529 and e.value.body["error"]["type"] == "overloaded_error"


def test_mid_stream_failure_is_an_error_event(gw):
    with httpx.stream(
        "POST",
        gw.url + "/v1/messages",
        json={
            "model": "faulty/cut-stream",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
        headers={"x-api-key": CLIENT_KEY},
        timeout=10,
    ) as r:
        text = r.read().decode()
    assert r.status_code == 200
    last = [block for block in text.strip().split("\n\n") if block][-1]
    assert last.startswith("event: error") and '"type":"error"' in last
    assert "message_stop" not in text


def test_models_in_anthropic_shape_for_claude_code(gw):
    r = httpx.get(gw.url + "/v1/models", headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"})
    data = r.json()
    assert r.status_code == 200 and {"data", "has_more", "first_id", "last_id"} <= data.keys()
    ids = [m["id"] for m in data["data"]]
    assert "claude-via-openai" in ids and all(m["type"] == "model" for m in data["data"])
    page = client(gw).models.list()
    assert "claude-via-openai" in [m.id for m in page.data]


def test_models_in_anthropic_shape_validate_against_the_sdk_and_page(gw):
    from anthropic.types import ModelInfo

    h = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    everything = httpx.get(gw.url + "/v1/models?limit=1000", headers=h).json()
    ids = [ModelInfo.model_validate(m).id for m in everything["data"]]  # strict: every required field
    assert len(ids) >= 2 and everything["has_more"] is False
    first = httpx.get(gw.url + "/v1/models?limit=1", headers=h).json()
    assert [m["id"] for m in first["data"]] == ids[:1] and first["has_more"] is True
    assert first["first_id"] == first["last_id"] == ids[0]
    walked = [m.id for m in client(gw).models.list(limit=1)]  # the SDK pages on by after_id
    assert walked == ids
    back = httpx.get(gw.url + f"/v1/models?before_id={ids[-1]}&limit=1", headers=h).json()
    assert [m["id"] for m in back["data"]] == ids[-2:-1]
    info = client(gw).models.retrieve(ids[0])
    assert ModelInfo.model_validate(info.model_dump()) and info.type == "model" and info.lifecycle == "active"
    assert info.id == ids[0] and info.created_at.year >= 2024


def test_count_tokens_native_is_forwarded(gw, upstreams):
    body = {"model": "anthropic/claude-sonnet-4-5", "messages": [{"role": "user", "content": "count these words"}]}
    r = client(gw).messages.with_raw_response.count_tokens(**body, extra_headers={"anthropic-beta": "token-counting"})
    assert r.parse().input_tokens > 0 and r.headers.get("x-switchyard-estimated") is None
    req = received(upstreams, "anthropic")
    assert req["path"] == "/v1/messages/count_tokens" and req["headers"]["x-api-key"] == ANT_KEY
    assert req["headers"]["anthropic-beta"] == "token-counting"
    assert req["body"] == {**body, "model": "claude-sonnet-4-5"}
