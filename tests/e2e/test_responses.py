"""The openai SDK's Responses API -> the real gateway -> native OpenAI and translated upstreams.

The official SDK parses every answer and event into its models; the simulated upstreams record
what they received. Native: the body reaches the OpenAI upstream as sent, ids are the gateway's.
Translated: Anthropic, Gemini and the built-in mock answer through the chat form, with the
conversation kept in the response store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from simulators.faults import FaultUpstream
from simulators.server import MockUpstream
from tests.e2e.conftest import CLIENT_KEY, OTHER_KEY, UPSTREAM_KEY, base_config
from tests.support.redis import REDIS_URL
from tests.support.servers import ServerThread

TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, tuple[ServerThread, Any]]]:
    apps: dict[str, Any] = {
        "openai": MockUpstream("openai"),
        "anthropic": MockUpstream("anthropic"),
        "gemini": MockUpstream("gemini"),
        "faulty": FaultUpstream(),
    }
    servers = {name: ServerThread(app).start() for name, app in apps.items()}
    yield {name: (servers[name], apps[name]) for name in apps}
    for s in servers.values():
        s.stop()


def config(upstreams, redis_prefix: str | None = None) -> dict[str, Any]:
    cfg = base_config(upstreams["openai"][0].url)
    cfg["providers"]["anthropic"] = {"kind": "anthropic", "base_url": upstreams["anthropic"][0].url, "api_key": "a"}
    cfg["providers"]["gemini"] = {"kind": "gemini", "base_url": upstreams["gemini"][0].url, "api_key": "g"}
    cfg["providers"]["faulty"] = {
        "kind": "openai",
        "base_url": upstreams["faulty"][0].url + "/v1",
        "responses": "translate",
        "retries": 0,
        "timeout": 5,
    }
    cfg["models"].append({"name": "helper", "deployments": [{"provider": "openai", "upstream": "gpt-4o-mini"}]})
    if redis_prefix:
        cfg["usage"] = {"redis_url": REDIS_URL, "prefix": redis_prefix, "flush_interval": 0.05}
    return cfg


@pytest.fixture(params=["memory", "redis"])
def gw(request, upstreams, gateway_for, redis_prefix) -> ServerThread:
    for _, app in upstreams.values():
        app.requests.clear()
    return gateway_for(config(upstreams, redis_prefix if request.param == "redis" else None))


def sdk(gw: ServerThread, key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


def received(upstreams, name: str) -> dict[str, Any]:
    req = upstreams[name][1].requests[-1]
    assert CLIENT_KEY not in json.dumps(req)  # the client's key never reaches an upstream
    return req


TRANSLATED = ["mock/echo", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"]


# -- translated --------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", TRANSLATED)
def test_translated_create_follow_up_retrieve_delete(gw, model):
    c = sdk(gw)
    r = c.responses.create(model=model, input="hello there", instructions="be brief")
    assert r.id.startswith("resp_") and r.object == "response" and r.status == "completed"
    assert r.model == model and r.output_text and r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    r2 = c.responses.create(model=model, input="and again?", previous_response_id=r.id)
    assert r2.previous_response_id == r.id and r2.output_text
    assert c.responses.retrieve(r.id).model_dump() == r.model_dump()
    items = c.responses.input_items.list(r2.id).data
    assert items and items[0].type == "message"
    with pytest.raises(openai.NotFoundError):
        sdk(gw, OTHER_KEY).responses.retrieve(r.id)  # another key's response does not exist for it
    c.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)


def test_translated_previous_response_rebuilds_the_conversation(gw, upstreams):
    c = sdk(gw)
    r = c.responses.create(model="anthropic/claude-sonnet-4-5", input="first words", instructions="be brief")
    first = received(upstreams, "anthropic")["body"]
    assert first["system"] == "be brief" or first["system"][0]["text"] == "be brief"
    c.responses.create(model="anthropic/claude-sonnet-4-5", input="second words", previous_response_id=r.id)
    body = received(upstreams, "anthropic")["body"]
    assert "system" not in body  # OpenAI: earlier instructions are not carried over by previous_response_id
    texts = [m["content"] if isinstance(m["content"], str) else m["content"][0]["text"] for m in body["messages"]]
    assert texts == ["first words", r.output_text, "second words"]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


@pytest.mark.parametrize("model", TRANSLATED)
def test_translated_stream_helper(gw, model):
    with sdk(gw).responses.stream(model=model, input="stream these words") as s:
        events = list(s)
        final = s.get_final_response()
    seq = [e.sequence_number for e in events]
    assert seq == list(range(len(seq)))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert sum(t in ("response.completed", "response.incomplete", "response.failed") for t in types) == 1
    assert final.status == "completed" and final.output_text == "stream these words"
    assert sdk(gw).responses.retrieve(final.id).output_text == final.output_text  # readable at once


def test_store_false_keeps_nothing(gw):
    c = sdk(gw)
    r = c.responses.create(model="mock/echo", input="hi", store=False)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)
    with pytest.raises(openai.BadRequestError) as e:  # OpenAI's answer, which Codex recovers from
        c.responses.create(model="mock/echo", input="again", previous_response_id=r.id)
    assert e.value.body["param"] == "previous_response_id" and e.value.code == "previous_response_not_found"
    assert e.value.body["type"] == "invalid_request_error"
    assert e.value.body["message"] == f"Previous response with id '{r.id}' not found."


def test_budget_cut_is_incomplete(gw):
    r = sdk(gw).responses.create(model="mock/echo", input=" ".join(["word"] * 40), max_output_tokens=16)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"


def test_function_tools_translated_to_anthropic(gw, upstreams):
    c = sdk(gw)
    c.responses.create(model="anthropic/claude-sonnet-4-5", input="weather in Paris?", tools=[TOOL])
    body = received(upstreams, "anthropic")["body"]
    assert body["tools"][0]["name"] == "get_weather" and body["tools"][0]["input_schema"] == TOOL["parameters"]
    # A tool result round trip, written as a client would replay it.
    c.responses.create(
        model="anthropic/claude-sonnet-4-5",
        tools=[TOOL],
        input=[
            {"role": "user", "content": "weather in Paris?"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ],
    )
    msgs = received(upstreams, "anthropic")["body"]["messages"]
    assert msgs[1]["content"][0] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    assert msgs[2]["content"][0]["type"] == "tool_result" and msgs[2]["content"][0]["tool_use_id"] == "call_1"


def test_hosted_tool_on_a_translated_provider_is_400(gw):
    with pytest.raises(openai.BadRequestError) as e:
        sdk(gw).responses.create(model="gemini/gemini-2.5-flash", input="x", tools=[{"type": "web_search"}])
    assert "web_search" in e.value.message and "gemini" in e.value.message and e.value.body["param"] == "tools"


def test_codex_shaped_request(gw, upstreams):
    """Codex: instructions, developer message, custom tools, reasoning summary, include, a namespace item."""
    body = {
        "model": "mock/echo",
        "instructions": "You are Codex.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "sandbox: read-only"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list the files"}]},
        ],
        "tools": [
            {
                "type": "function",
                "name": "shell",
                "description": "Run a command",
                "strict": False,
                "parameters": {
                    "type": "object",
                    "properties": {"command": {"type": "array", "items": {"type": "string"}}},
                    "required": ["command"],
                },
            },
            {
                "type": "custom",
                "name": "apply_patch",
                "description": "Apply a patch",
                "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"},
            },
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "session-1",
    }
    with httpx.stream(
        "POST", gw.url + "/v1/responses", json=body, headers={"authorization": f"Bearer {CLIENT_KEY}"}
    ) as r:
        text = r.read().decode()
    assert r.status_code == 200, text
    assert text.startswith("event: response.created") and "event: response.completed" in text and "[DONE]" not in text


def test_stream_cut_mid_way_ends_with_response_failed(gw):
    with sdk(gw).responses.stream(model="faulty/cut-stream", input="x") as s:
        events = list(s)
    assert events[-1].type == "response.failed" and events[-1].response.status == "failed"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_usage_record_endpoint_is_responses(gw):
    sdk(gw).responses.create(model="mock/echo", input="count me")
    text = httpx.get(gw.url + "/metrics").text
    assert 'endpoint="/v1/responses"' in text


# -- native: OpenAI --------------------------------------------------------------------------------
def test_native_body_as_sent_ids_rewritten(gw, upstreams):
    c = sdk(gw)
    body = {
        "model": "openai/gpt-4o-mini",
        "input": "hello native",
        "instructions": "be brief",
        "metadata": {"a": "b"},
        "text": {"format": {"type": "text"}},
        "truncation": "auto",
    }
    r = c.responses.create(**body)
    req = received(upstreams, "openai")
    assert req["path"] == "/v1/responses" and req["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert req["body"] == {**body, "model": "gpt-4o-mini"}
    assert r.id.startswith("resp_sy") and r.model == "openai/gpt-4o-mini" and r.output_text
    upstream_id = (
        upstreams["openai"][1].responses.last_id if hasattr(upstreams["openai"][1].responses, "last_id") else None
    )
    r2 = c.responses.create(model="openai/gpt-4o-mini", input="and more", previous_response_id=r.id)
    prev = received(upstreams, "openai")["body"]["previous_response_id"]
    assert prev.startswith("resp_") and prev != r.id and (upstream_id is None or prev == upstream_id)
    assert r2.previous_response_id == r.id
    got = c.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text and got.model == "openai/gpt-4o-mini"
    assert received(upstreams, "openai")["path"] == f"/v1/responses/{prev}"
    assert c.responses.input_items.list(r.id).data[0].type == "message"
    c.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)


def test_native_stream_relayed(gw, upstreams):
    with sdk(gw).responses.stream(model="helper", input="native stream words") as s:
        events = list(s)
        final = s.get_final_response()
    assert received(upstreams, "openai")["body"]["stream"] is True
    assert events[0].type == "response.created" and events[0].response.id == final.id
    assert final.id.startswith("resp_sy") and final.model == "helper" and final.output_text
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert sdk(gw).responses.retrieve(final.id).id == final.id


def test_native_hosted_tools_pass_through(gw, upstreams):
    sdk(gw).responses.create(model="openai/gpt-4o-mini", input="search", tools=[{"type": "web_search"}])
    assert received(upstreams, "openai")["body"]["tools"] == [{"type": "web_search"}]


def test_agents_sdk_runs_an_agent_with_a_function_tool(gw):
    agents = pytest.importorskip("agents")
    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Get the weather for a city."""
        calls.append(city)
        return f"sunny in {city}"

    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    model = agents.OpenAIResponsesModel(model="helper", openai_client=client)
    agent = agents.Agent(name="weather", instructions="Use get_weather.", tools=[get_weather], model=model)
    result = agents.Runner.run_sync(agent, "get_weather for Paris", run_config=agents.RunConfig(tracing_disabled=True))
    assert isinstance(result.final_output, str) and result.final_output
