"""The mock model plays along with agents: tool calls and JSON answers valid for their schemas.

Every answer is checked with ``jsonschema`` against the schema it had to satisfy, through the real
gateway and the official SDKs (chat, Responses, Messages; streamed and not), and for the simulated
Gemini and Cohere upstreams, which share the rules in ``simulators/play.py``.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal

import anthropic
import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from simulators import play
from simulators.server import MockUpstream
from tests.e2e.conftest import CLIENT_KEY, UPSTREAM_KEY, base_config
from tests.support.servers import ServerThread

Factory = Callable[[dict[str, Any]], ServerThread]


# -- schemas -------------------------------------------------------------------------------------


class Unit(enum.Enum):
    C = "celsius"
    F = "fahrenheit"


class Place(BaseModel):
    city: str = Field(min_length=2, max_length=40)
    country: str = Field(pattern=r"^[A-Z]{2}$")


class Forecast(BaseModel):
    place: Place
    unit: Unit
    days: int = Field(ge=1, le=7)
    confidence: float = Field(gt=0, lt=1)
    tags: list[str] = Field(min_length=2, max_length=3)
    when: dt.datetime
    ref: uuid.UUID
    note: str | None = None
    mode: Literal["fast", "slow"] = "fast"


class Tree(BaseModel):
    label: str
    children: list[Tree] = []


SCHEMAS: list[dict[str, Any]] = [
    Forecast.model_json_schema(),
    Tree.model_json_schema(),
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "exclusiveMinimum": 10, "multipleOf": 5},
            "x": {"type": "number", "minimum": -2, "maximum": -1},
            "flag": {"type": ["boolean", "null"]},
            "ids": {"type": "array", "items": {"type": "integer"}, "minItems": 3, "uniqueItems": True},
            "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
            "any": {},
            "c": {"const": "fixed"},
            "one": {"oneOf": [{"type": "string", "maxLength": 3}, {"type": "integer"}]},
            "both": {"allOf": [{"properties": {"a": {"type": "string"}}}, {"required": ["a"]}]},
            "mail": {"type": "string", "format": "email"},
            "day": {"type": "string", "format": "date"},
        },
        "required": ["n", "x", "flag", "ids", "pair", "any", "c", "one", "both", "mail", "day"],
        "additionalProperties": False,
    },
    # Gemini's OpenAPI subset: upper-case types, nullable.
    {
        "type": "OBJECT",
        "properties": {"q": {"type": "STRING"}, "k": {"type": "INTEGER", "nullable": True}},
        "required": ["q"],
    },
]


def _validate(value: Any, schema: dict[str, Any]) -> None:
    lowered = json.loads(json.dumps(schema).replace('"OBJECT"', '"object"').replace('"STRING"', '"string"'))
    lowered = json.loads(json.dumps(lowered).replace('"INTEGER"', '"integer"'))
    jsonschema.Draft202012Validator(lowered, format_checker=jsonschema.FormatChecker()).validate(value)


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.get("title") or ",".join(s.get("properties", {}))[:30])
def test_instances_satisfy_their_schemas(schema: dict[str, Any]) -> None:
    value = play.instance(schema, "Paris weather")
    _validate(value, schema)
    assert play.instance(schema, "Paris weather") == value  # deterministic


def test_a_tool_is_named_by_its_name_in_any_case_or_with_spaces() -> None:
    tools = [play.Tool("get_weather", {}), play.Tool("lookup-stock", {})]
    assert play.named_tool(tools, "please call GET_WEATHER for Oslo") == tools[0]
    assert play.named_tool(tools, "lookup stock ACME, then get weather") == tools[1]  # the earliest mention
    assert play.named_tool(tools, "what is the weather like?") is None
    assert play.named_tool(tools, "get_weathers") is None


# -- the mock provider through the gateway ------------------------------------------------------

WEATHER_SCHEMA = Forecast.model_json_schema()
TOOLS = [
    {"type": "function", "function": {"name": "get_forecast", "parameters": WEATHER_SCHEMA}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]


@pytest.fixture
def client(gateway_for: Factory) -> openai.OpenAI:
    gw = gateway_for(base_config())
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0)


def _ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "You are a helpful agent."}, {"role": "user", "content": text}]


def _streamed_call(client: openai.OpenAI, **kw: Any) -> tuple[str, str, str | None]:
    name, args, finish = "", "", None
    for chunk in client.chat.completions.create(model="mock/echo", stream=True, **kw):
        for c in chunk.choices:
            for tc in c.delta.tool_calls or ():
                name += tc.function.name or ""
                args += tc.function.arguments or ""
            finish = c.finish_reason or finish
    return name, args, finish


@pytest.mark.parametrize("stream", [False, True])
def test_a_named_tool_is_called_with_valid_arguments(client: openai.OpenAI, stream: bool) -> None:
    kw: dict[str, Any] = {"messages": _ask("Use get_forecast for Lyon"), "tools": TOOLS}
    if stream:
        name, args, finish = _streamed_call(client, **kw)
    else:
        r = client.chat.completions.create(model="mock/echo", **kw)
        (call,) = r.choices[0].message.tool_calls
        name, args, finish = call.function.name, call.function.arguments, r.choices[0].finish_reason
        assert r.choices[0].message.content is None and call.id.startswith("call_")
        assert r.usage.completion_tokens > 0
    assert (name, finish) == ("get_forecast", "tool_calls")
    _validate(json.loads(args), WEATHER_SCHEMA)
    Forecast.model_validate_json(args)


def test_tool_choice_decides(client: openai.OpenAI) -> None:
    def called(choice: Any, text: str = "hello there") -> str | None:
        r = client.chat.completions.create(model="mock/echo", messages=_ask(text), tools=TOOLS, tool_choice=choice)
        calls = r.choices[0].message.tool_calls
        return calls[0].function.name if calls else r.choices[0].message.content

    assert called("auto") == "hello there"  # no tool named: text
    assert called("required") == "get_forecast"  # the first tool
    assert called("required", "what is the get time?") == "get_time"  # the named one
    assert called({"type": "function", "function": {"name": "get_time"}}) == "get_time"
    assert called("none", "call get_time") == "call get_time"


def test_after_a_tool_result_the_answer_is_text(client: openai.OpenAI) -> None:
    messages: list[Any] = _ask("call get_time please")
    first = client.chat.completions.create(model="mock/echo", messages=messages, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_time" and json.loads(call.function.arguments) == {}
    messages += [first.choices[0].message, {"role": "tool", "tool_call_id": call.id, "content": "It is noon."}]
    for choice in ("auto", "required"):  # even a required call stops here: agents must not loop
        second = client.chat.completions.create(model="mock/echo", messages=messages, tools=TOOLS, tool_choice=choice)
        assert second.choices[0].message.content == "It is noon."
        assert second.choices[0].finish_reason == "stop" and not second.choices[0].message.tool_calls


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_answers_are_valid(client: openai.OpenAI, stream: bool) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": WEATHER_SCHEMA, "strict": False}}
    kw: dict[str, Any] = {"model": "mock/echo", "messages": _ask("Forecast for Nice"), "response_format": fmt}
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kw))
    else:
        text = client.chat.completions.create(**kw).choices[0].message.content
    _validate(json.loads(text), WEATHER_SCHEMA)


def test_json_object_answers_are_an_object(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="mock/echo", messages=_ask("anything"), response_format={"type": "json_object"}
    )
    assert json.loads(r.choices[0].message.content) == {"text": "anything"}


def test_sdk_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    r = client.chat.completions.parse(model="mock/echo", messages=_ask("Forecast"), response_format=Forecast)
    parsed = r.choices[0].message.parsed
    assert isinstance(parsed, Forecast) and 1 <= parsed.days <= 7


@pytest.mark.parametrize("stream", [False, True])
def test_responses_api_function_call_and_structured_text(client: openai.OpenAI, stream: bool) -> None:
    tool = {"type": "function", "name": "get_forecast", "parameters": WEATHER_SCHEMA, "strict": False}
    kw: dict[str, Any] = {"model": "mock/echo", "input": "get_forecast for Pau", "tools": [tool]}
    if stream:
        with client.responses.stream(**kw) as s:
            r = s.get_final_response()
    else:
        r = client.responses.create(**kw)
    (item,) = [o for o in r.output if o.type == "function_call"]
    assert item.name == "get_forecast"
    _validate(json.loads(item.arguments), WEATHER_SCHEMA)
    fmt = {"type": "json_schema", "name": "forecast", "schema": WEATHER_SCHEMA, "strict": False}
    r = client.responses.create(model="mock/echo", input="Forecast for Pau", text={"format": fmt})  # type: ignore[arg-type]
    _validate(json.loads(r.output_text), WEATHER_SCHEMA)


def test_messages_api_tool_use(gateway_for: Factory) -> None:
    gw = gateway_for(base_config())
    c = anthropic.Anthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0)
    tool = {"name": "get_forecast", "description": "forecast", "input_schema": WEATHER_SCHEMA}
    r = c.messages.create(
        model="mock/echo",
        max_tokens=500,
        messages=[{"role": "user", "content": "get_forecast for Metz"}],
        tools=[tool],  # type: ignore[list-item]
    )
    (block,) = [b for b in r.content if b.type == "tool_use"]
    assert r.stop_reason == "tool_use" and block.name == "get_forecast"
    _validate(block.input, WEATHER_SCHEMA)


# -- the simulated Gemini and Cohere upstreams --------------------------------------------------


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, ServerThread]]:
    with ServerThread(MockUpstream("gemini")) as g, ServerThread(MockUpstream("cohere")) as c:
        yield {"gemini": g, "cohere": c}


@pytest.fixture
def dialects(upstreams: dict[str, ServerThread], gateway_for: Factory) -> openai.OpenAI:
    cfg = base_config()
    for kind, srv in upstreams.items():
        cfg["providers"][kind] = {"kind": kind, "base_url": srv.url, "api_key": UPSTREAM_KEY, "timeout": 5}
    gw = gateway_for(cfg)
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0)


@pytest.mark.parametrize("model", ["gemini/gemini-2.5-flash", "cohere/command-a-03-2025"])
def test_other_dialects_call_the_named_tool_with_valid_arguments(dialects: openai.OpenAI, model: str) -> None:
    r = dialects.chat.completions.create(model=model, messages=_ask("get_forecast for Caen"), tools=TOOLS)
    (call,) = r.choices[0].message.tool_calls
    assert call.function.name == "get_forecast"
    _validate(json.loads(call.function.arguments), WEATHER_SCHEMA)


@pytest.mark.parametrize("model", ["gemini/gemini-2.5-flash", "cohere/command-a-03-2025"])
def test_other_dialects_answer_json_for_the_schema(dialects: openai.OpenAI, model: str) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 3}},
        "required": ["city", "days"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "f", "schema": schema}}
    r = dialects.chat.completions.create(model=model, messages=_ask("Forecast"), response_format=fmt)  # type: ignore[arg-type]
    value = json.loads(r.choices[0].message.content)
    _validate(value, schema)
    assert value == {"city": "Forecast", "days": 3}
