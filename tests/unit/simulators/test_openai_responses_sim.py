"""The simulated Responses API (``simulators/openai_responses.py``) in ``MockUpstream("openai")``, checked with the
openai SDK: ``Response.model_validate``, the ``ResponseStreamEvent`` union, and a real ``OpenAI`` client over ASGI."""

from __future__ import annotations

import asyncio
import json
import re
import time
import tracemalloc
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseItem, ResponseStreamEvent
from pydantic import TypeAdapter

from simulators.openai_responses import MAX_OUTPUT_WORDS, ResponsesSimulator, ResponsesStore
from simulators.sampling import sample_schema
from simulators.server import MockUpstream
from tests.unit.simulators import BASE, http_client

jsonschema = pytest.importorskip("jsonschema")

EVENTS = TypeAdapter(ResponseStreamEvent)
ITEMS = TypeAdapter(list[ResponseItem])
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "parameters": {
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 3, "maximum": 7},
            "hourly": {"type": ["boolean", "null"]},
            "note": {"type": "string"},
        },
        "required": ["location", "unit", "days", "hourly"],
        "additionalProperties": False,
    },
}
TIME = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}
# Every top-level field OpenAI's Response object carries (API reference, "The response object").
RESPONSE_FIELDS = {
    "id",
    "object",
    "created_at",
    "status",
    "error",
    "incomplete_details",
    "instructions",
    "max_output_tokens",
    "model",
    "output",
    "parallel_tool_calls",
    "previous_response_id",
    "reasoning",
    "store",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_p",
    "truncation",
    "usage",
    "user",
    "metadata",
}


@pytest.fixture
def app() -> MockUpstream:
    return MockUpstream("openai")


@pytest.fixture
def client(app: MockUpstream) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", base_url=BASE + "/v1", http_client=http_client(app), max_retries=0)


def call(app: MockUpstream, method: str, path: str, body: Any = None) -> httpx.Response:
    """One raw request to the app (async ASGI client), the whole answer read."""

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
            r = await c.request(method, path, json=body)
            await r.aread()
            return r

    return asyncio.run(go())


def sse(r: httpx.Response) -> list[dict[str, Any]]:
    """The stream's events, checking the framing: ``event: <type>`` then ``data: <json>`` whose type matches."""
    assert r.headers["content-type"] == "text/event-stream"
    assert "[DONE]" not in r.text
    events = []
    for frame in r.text.split("\n\n"):
        if not frame:
            continue
        head, data = frame.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert head == f"event: {event['type']}"
        EVENTS.validate_python(event)
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert sum(e["type"] in TERMINAL for e in events) == 1 and events[-1]["type"] in TERMINAL
    return events


# -- the Response object ------------------------------------------------------------------
def test_text_answer_is_a_full_response_object(app):
    r = call(
        app, "POST", "/v1/responses", {"model": "gpt-4.1-mini", "input": "hello there world", "metadata": {"k": "v"}}
    )
    assert r.status_code == 200
    body = r.json()
    assert set(body) >= RESPONSE_FIELDS
    resp = Response.model_validate(body)
    assert re.fullmatch(r"resp_[0-9a-f]+", resp.id)
    assert (resp.object, resp.status, resp.model, resp.output_text) == (
        "response",
        "completed",
        "gpt-4.1-mini",
        "hello there world",
    )
    assert (resp.error, resp.incomplete_details, resp.previous_response_id, resp.instructions) == (
        None,
        None,
        None,
        None,
    )
    assert (body["store"], body["tool_choice"], body["tools"], body["metadata"], body["truncation"]) == (
        True,
        "auto",
        [],
        {"k": "v"},
        "disabled",
    )
    (msg,) = resp.output
    assert (msg.type, msg.role, msg.status, msg.content[0].type, msg.content[0].annotations) == (
        "message",
        "assistant",
        "completed",
        "output_text",
        [],
    )
    assert re.fullmatch(r"msg_[0-9a-f]+", msg.id)
    u = resp.usage
    assert (u.input_tokens, u.output_tokens, u.total_tokens) == (3, 3, 6)
    assert (u.input_tokens_details.cached_tokens, u.output_tokens_details.reasoning_tokens) == (0, 0)


def test_sdk_create_echoes_request_fields(client):
    r = client.responses.create(
        model="gpt-4.1",
        instructions="Answer in one short line.",
        input=[{"role": "user", "content": "the last words"}],
        temperature=0.2,
        top_p=0.9,
        reasoning={"effort": "low"},
        text={"verbosity": "low"},
        user="u-1",
        parallel_tool_calls=False,
        store=False,
    )
    assert r.output_text == "the last words"
    assert (r.instructions, r.temperature, r.top_p, r.user, r.parallel_tool_calls) == (
        "Answer in one short line.",
        0.2,
        0.9,
        "u-1",
        False,
    )
    assert (r.reasoning.effort, r.text.verbosity, r.text.format.type) == ("low", "low", "text")
    assert r.usage.input_tokens == 5 + 3  # instructions and input, in words


def test_max_output_tokens_cuts_and_marks_incomplete(client):
    r = client.responses.create(model="m", input="one two three four five", max_output_tokens=2)
    assert (r.status, r.incomplete_details.reason, r.output_text, r.max_output_tokens) == (
        "incomplete",
        "max_output_tokens",
        "one two",
        2,
    )
    assert r.output[0].status == "incomplete"
    assert r.completed_at is None
    assert r.usage.output_tokens == 2
    exact = client.responses.create(model="m", input="one two", max_output_tokens=2)
    assert (exact.status, exact.output_text) == ("completed", "one two")


def test_item_input_echoes_the_last_user_text(client):
    r = client.responses.create(
        model="m",
        input=[
            {"role": "developer", "content": "be terse"},
            {"role": "user", "content": [{"type": "input_text", "text": "first question"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "first answer"}]},
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "second"}, {"type": "input_text", "text": "question"}],
            },
        ],
    )
    assert r.output_text == "second question"
    assert r.usage.input_tokens == 2 + 2 + 2 + 2


# -- tools ----------------------------------------------------------------------------------
def test_a_tool_named_in_the_text_is_called_with_schema_valid_arguments(client):
    r = client.responses.create(
        model="m", input="What is the weather in Paris? Use get_weather.", tools=[TIME, WEATHER]
    )
    (call_,) = r.output
    assert (call_.type, call_.name, call_.status) == ("function_call", "get_weather", "completed")
    assert re.fullmatch(r"call_[0-9a-f]+", call_.call_id) and re.fullmatch(r"fc_[0-9a-f]+", call_.id)
    args = json.loads(call_.arguments)
    jsonschema.validate(args, WEATHER["parameters"])
    assert (args["unit"], args["days"], args["hourly"]) == ("celsius", 3, True)
    assert r.output_text == ""
    assert r.tools[1].strict is True  # OpenAI's default for function tools, echoed


def test_tool_choice_decides_when_the_text_names_no_tool(client):
    plain = client.responses.create(model="m", input="tell me something", tools=[WEATHER])
    assert plain.output[0].type == "message"
    none = client.responses.create(model="m", input="use get_weather", tools=[WEATHER], tool_choice="none")
    assert none.output_text == "use get_weather"
    required = client.responses.create(model="m", input="tell me", tools=[TIME, WEATHER], tool_choice="required")
    assert required.output[0].name == "get_time"
    forced = client.responses.create(
        model="m",
        input="what time is it? get_time",
        tools=[TIME, WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
    )
    assert forced.output[0].name == "get_weather"
    allowed = client.responses.create(
        model="m",
        input="get_time please",
        tools=[TIME, WEATHER],
        tool_choice={
            "type": "allowed_tools",
            "mode": "required",
            "tools": [{"type": "function", "name": "get_weather"}],
        },
    )
    assert allowed.output[0].name == "get_weather"
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="m", input="x", tools=[TIME], tool_choice={"type": "function", "name": "nope"})
    assert e.value.body["param"] == "tool_choice"


def test_after_a_function_call_output_the_answer_is_text(client):
    first = client.responses.create(model="m", input="weather in Oslo via get_weather", tools=[WEATHER])
    call_ = first.output[0]
    result = [{"type": "function_call_output", "call_id": call_.call_id, "output": "sunny and 20C"}]
    # Chained by previous_response_id ...
    second = client.responses.create(model="m", previous_response_id=first.id, input=result, tools=[WEATHER])
    assert (second.output_text, second.status, second.previous_response_id) == (
        "tool said: sunny and 20C",
        "completed",
        first.id,
    )
    # ... or with the whole conversation resent (store: false).
    history = [
        {"role": "user", "content": "weather in Oslo via get_weather"},
        call_.model_dump(exclude_none=True),
        *result,
    ]
    third = client.responses.create(model="m", input=history, tools=[WEATHER], store=False)
    assert third.output_text == "tool said: sunny and 20C"
    assert third.usage.input_tokens == second.usage.input_tokens
    with pytest.raises(openai.BadRequestError, match="No tool call found"):
        client.responses.create(model="m", input=[{"type": "function_call_output", "call_id": "call_x", "output": "?"}])


# -- streaming ------------------------------------------------------------------------------
def test_text_stream_grammar(app):
    r = call(app, "POST", "/v1/responses", {"model": "m", "input": "a b c d", "stream": True})
    events = sse(r)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created, final = events[0]["response"], events[-1]["response"]
    assert (created["status"], created["output"], created["usage"]) == ("in_progress", [], None)
    assert created["id"] == final["id"]
    item_id = events[2]["item"]["id"]
    assert all(e["item_id"] == item_id for e in events[3:-2])
    assert "".join(e["delta"] for e in events[4:8]) == events[8]["text"] == "a b c d"
    assert Response.model_validate(final).output_text == "a b c d"


def test_function_call_stream_grammar(app):
    body = {"model": "m", "input": "call get_weather now", "tools": [WEATHER], "stream": True}
    events = sse(call(app, "POST", "/v1/responses", body))
    types = [e["type"] for e in events]
    deltas = types.count("response.function_call_arguments.delta")
    assert deltas >= 1
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * deltas,
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added, done = events[2]["item"], events[-2]["item"]
    assert (added["type"], added["status"], added["arguments"], added["id"]) == (
        "function_call",
        "in_progress",
        "",
        done["id"],
    )
    args = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert args == events[-3]["arguments"] == done["arguments"]
    jsonschema.validate(json.loads(args), WEATHER["parameters"])


def test_incomplete_stream_ends_with_response_incomplete(app):
    events = sse(
        call(app, "POST", "/v1/responses", {"model": "m", "input": "a b c d", "stream": True, "max_output_tokens": 3})
    )
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert sum(e["type"] == "response.output_text.delta" for e in events) == 3


def test_sdk_stream_helper_and_final_response(client):
    with client.responses.stream(model="m", input="streamed words here") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "streamed words here"
    assert client.responses.retrieve(final.id).output_text == "streamed words here"
    with client.responses.stream(model="m", input="please get_weather", tools=[WEATHER]) as stream:
        final = stream.get_final_response()
    assert final.output[0].type == "function_call"
    jsonschema.validate(json.loads(final.output[0].arguments), WEATHER["parameters"])


def test_chunks_fix_the_delta_count_and_chunk_delay_paces_the_stream():
    app = MockUpstream("openai", chunks=5, chunk_delay_ms=20)
    started = time.monotonic()
    events = sse(call(app, "POST", "/v1/responses", {"model": "m", "input": "only two", "stream": True}))
    assert time.monotonic() - started >= 0.02 * len(events)
    assert sum(e["type"] == "response.output_text.delta" for e in events) == 5
    assert len(events[-1]["response"]["output"][0]["content"][0]["text"].split()) == 5


# -- stored responses -----------------------------------------------------------------------
def test_retrieve_input_items_delete_and_404(app, client):
    r = client.responses.create(
        model="m", input=[{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]
    )
    got = call(app, "GET", f"/v1/responses/{r.id}")
    assert got.status_code == 200 and Response.model_validate(got.json()) == r
    items = call(app, "GET", f"/v1/responses/{r.id}/input_items?order=asc").json()
    assert (items["object"], items["has_more"]) == ("list", False)
    data = ITEMS.validate_python(items["data"])
    assert [(i.type, i.role) for i in data] == [("message", "system"), ("message", "user")]
    assert (items["first_id"], items["last_id"]) == (data[0].id, data[1].id)
    assert data[1].content[0].type == "input_text" and data[1].content[0].text == "hi"
    assert [i.id for i in client.responses.input_items.list(r.id)] == [data[1].id, data[0].id]  # desc by default
    page = call(app, "GET", f"/v1/responses/{r.id}/input_items?order=asc&limit=1").json()
    assert (len(page["data"]), page["has_more"], page["last_id"]) == (1, True, data[0].id)

    deleted = call(app, "DELETE", f"/v1/responses/{r.id}")
    assert deleted.json() == {"id": r.id, "object": "response.deleted", "deleted": True}
    for method, path in (
        ("GET", f"/v1/responses/{r.id}"),
        ("DELETE", f"/v1/responses/{r.id}"),
        ("GET", f"/v1/responses/{r.id}/input_items"),
    ):
        gone = call(app, method, path)
        assert gone.status_code == 404
        assert gone.json() == {
            "error": {
                "message": f"Response with id '{r.id}' not found.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)


def test_store_false_and_unknown_previous_response(client):
    r = client.responses.create(model="m", input="not kept", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    for prev in (r.id, "resp_unknown"):
        with pytest.raises(openai.NotFoundError) as e:
            client.responses.create(model="m", input="next", previous_response_id=prev)
        assert (e.value.body["param"], e.value.body["type"]) == ("previous_response_id", "invalid_request_error")
        assert prev in e.value.body["message"]


def test_previous_response_prepends_the_conversation(client):
    first = client.responses.create(model="m", input="alpha beta", instructions="ignored later")
    second = client.responses.create(model="m", input="gamma", previous_response_id=first.id)
    assert second.output_text == "gamma"
    assert second.usage.input_tokens == 2 + 2 + 1  # first input, first output, new input; not the old instructions
    third = client.responses.create(model="m", input="delta", previous_response_id=second.id)
    assert third.usage.input_tokens == 2 + 2 + 1 + 1 + 1
    assert [i.content[0].text for i in client.responses.input_items.list(third.id)] == ["delta"]  # its own input only


def test_input_tokens_endpoint_matches_usage(client):
    kwargs = {"model": "m", "input": "count these four words", "instructions": "two words", "tools": [WEATHER]}
    r = client.responses.create(**kwargs)
    counted = client.responses.input_tokens.count(**kwargs)
    assert (
        counted.input_tokens
        == r.usage.input_tokens
        == 4 + 2 + len(json.dumps([WEATHER], separators=(",", ":")).split())
    )


# -- bounds ---------------------------------------------------------------------------------
def test_store_keeps_the_newest_thousand_and_a_byte_budget():
    sim = ResponsesSimulator()
    ids = [sim.create({"model": "m", "input": f"n{i}"}).response["id"] for i in range(1001)]
    assert len(sim.store) == 1000
    assert sim.store.get(ids[0]) is None and sim.store.get(ids[1]) is not None and sim.store.get(ids[-1]) is not None
    small = ResponsesSimulator(store=ResponsesStore(max_bytes=20_000))
    ids = [small.create({"model": "m", "input": "x " * 2000}).response["id"] for _ in range(5)]
    assert small.store.size <= 20_000 or len(small.store) == 1
    assert small.store.get(ids[-1]) is not None and small.store.get(ids[0]) is None


def test_huge_input_is_accepted_and_the_echo_is_capped():
    sim = ResponsesSimulator()
    words = 2_000_000
    body = {"model": "m", "input": "word " * words}
    tracemalloc.start()
    try:
        answer = sim.create(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    r = Response.model_validate(answer.response)
    assert (r.status, r.incomplete_details.reason) == ("incomplete", "max_output_tokens")
    assert (r.usage.input_tokens, r.usage.output_tokens) == (words, MAX_OUTPUT_WORDS)
    assert len(r.output_text.split()) == MAX_OUTPUT_WORDS
    assert peak < 4_000_000  # the 10 MB input is never copied or split whole, not even to be stored
    stored = sim.store.get(r.id)
    assert stored is not None and stored.items[0]["content"][0]["text"] is body["input"]
    assert 10_000_000 < sim.store.size < 10_100_000
    big = sim.create({"model": "m", "input": "y " * 10_000, "max_output_tokens": 100_000, "store": False})
    assert big.response["usage"]["output_tokens"] == MAX_OUTPUT_WORDS


def test_schema_samples_are_valid():
    schema = {
        "type": "object",
        "$defs": {
            "point": {
                "type": "object",
                "properties": {"x": {"type": "number", "exclusiveMinimum": 2}},
                "required": ["x"],
            }
        },
        "properties": {
            "p": {"$ref": "#/$defs/point"},
            "tags": {"type": "array", "items": {"type": "string", "minLength": 12}, "minItems": 2},
            "kind": {"anyOf": [{"type": "null"}, {"const": "k"}]},
            "tree": {"$ref": "#"},
        },
        "required": ["p", "tags", "kind"],
    }
    value = sample_schema(schema, "fill")
    jsonschema.validate(value, schema)
    assert value["kind"] == "k" and len(value["tags"]) == 2


def test_errors_in_openai_shape(app):
    cases = [
        ({"input": "no model"}, 400, "model"),
        ({"model": "m", "input": "x", "max_output_tokens": 0}, 400, "max_output_tokens"),
        ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, 400, "input[0].role"),
        ({"model": "m", "input": 42}, 400, "input"),
    ]
    for body, status, param in cases:
        r = call(app, "POST", "/v1/responses", body)
        assert r.status_code == status
        assert r.json()["error"]["param"] == param and r.json()["error"]["type"] == "invalid_request_error"
    assert call(app, "PUT", "/v1/responses/resp_1").status_code == 404
    recorded = call(app, "GET", "/_requests").json()
    assert recorded[0]["path"] == "/v1/responses" and recorded[0]["body"] == {"input": "no model"}


def test_json_schema_text_format_answers_schema_valid_json(client):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer", "minimum": 1000}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    r = client.responses.create(
        model="m",
        input="Oslo",
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
    )
    value = json.loads(r.output_text)
    jsonschema.validate(value, schema)
    assert value == {"city": "Oslo", "population": 1000}
    assert r.text.format.type == "json_schema"
