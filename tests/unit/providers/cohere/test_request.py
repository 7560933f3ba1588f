"""The Cohere v2 dialect's request translation, checked against Cohere's own documented examples.

Golden source: https://docs.cohere.com/reference/chat request examples ("Default", "Tools"); each test names its own.
"""

from __future__ import annotations

import orjson
import pytest

from gateway.errors import GatewayError
from providers.base import CHAT, COMPLETIONS, Target
from tests.unit.providers.cohere import COHERE, KEY

adapter, build, chat, ctx = COHERE.adapter, COHERE.build, COHERE.chat, COHERE.ctx


# -- request ----------------------------------------------------------------------------------


def test_golden_default_request():
    # https://docs.cohere.com/reference/chat, "Default" cURL example.
    req = adapter().build_request(
        CHAT, chat([{"role": "user", "content": "Hello world!"}]), Target("command-a-03-2025"), ctx()
    )
    assert req.method == "POST"
    assert req.url == "https://api.cohere.com/v2/chat"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["content-type"] == "application/json"
    assert orjson.loads(req.body) == {
        "model": "command-a-03-2025",
        "messages": [{"role": "user", "content": "Hello world!"}],
    }
    assert req.stream is False


def test_golden_tools_request():
    # https://docs.cohere.com/reference/chat, "Tools" cURL example: Cohere's tool shape is OpenAI's.
    tools = [
        {
            "type": "function",
            "function": {
                "name": "query_daily_sales_report",
                "description": "Connects to a database to retrieve overall sales volumes and sales information for a given day.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "day": {
                            "description": "Retrieves sales data for this day, formatted as YYYY-MM-DD.",
                            "type": "string",
                        }
                    },
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "query_product_catalog",
                "description": "Connects to a a product catalog with information about all the products being sold, including categories, prices, and stock levels.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "category": {
                            "description": "Retrieves product information data for all products in this category.",
                            "type": "string",
                        }
                    },
                },
            },
        },
    ]
    question = "Can you provide a sales summary for 29th September 2023, and also give me some details about the products in the 'Electronics' category, for example their prices and stock levels?"
    out = build(chat([{"role": "user", "content": question}], tools=tools, tool_choice="auto"))
    assert out == {"model": "command-a-03-2025", "messages": [{"role": "user", "content": question}], "tools": tools}


def test_parameter_table():
    out = build(
        chat(
            [{"role": "user", "content": "hi"}],
            max_completion_tokens=50,
            stop="END",
            temperature=0.5,
            top_p=1.0,
            top_k=40,
            seed=7,
            frequency_penalty=0.2,
            presence_penalty=0.1,
            logprobs=True,
            stream=True,
            stream_options={"include_usage": True},
            user="u-1",
            n=1,
            safety_mode="STRICT",
        )
    )
    assert out == {
        "model": "command-a-03-2025",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 50,
        "stop_sequences": ["END"],
        "temperature": 0.5,
        "p": 0.99,  # OpenAI's 1.0 clamped into Cohere's documented [0.01, 0.99]
        "k": 40,
        "seed": 7,
        "frequency_penalty": 0.2,
        "presence_penalty": 0.1,
        "logprobs": True,
        "stream": True,
        "safety_mode": "STRICT",
    }


def test_stream_request_accepts_event_stream():
    req = adapter().build_request(CHAT, chat([{"role": "user", "content": "x"}], stream=True), Target("m"), ctx())
    assert req.stream is True and req.headers["accept"] == "text/event-stream"


def test_messages_mapping():
    # Roles and tool turns as https://docs.cohere.com/v2/docs/tool-use-overview documents them.
    call = {
        "id": "get_weather_1byjy32y4hvq",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location":"Toronto"}'},
    }
    out = build(
        chat(
            [
                {"role": "developer", "content": "Be brief."},
                {"role": "system", "content": [{"type": "text", "text": "Answer in French."}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What's the weather in Toronto?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    ],
                },
                {"role": "assistant", "content": "I will search for the weather in Toronto.", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "get_weather_1byjy32y4hvq", "content": '[{"temperature": "20C"}]'},
                {"role": "assistant", "content": "It's 20°C in Toronto."},
            ]
        )
    )
    assert out["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": [{"type": "text", "text": "Answer in French."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What's the weather in Toronto?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
        {"role": "assistant", "tool_calls": [call], "tool_plan": "I will search for the weather in Toronto."},
        {"role": "tool", "tool_call_id": "get_weather_1byjy32y4hvq", "content": '[{"temperature": "20C"}]'},
        {"role": "assistant", "content": "It's 20°C in Toronto."},
    ]


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"type": "json_object"}),
        (
            {"type": "json_schema", "json_schema": {"name": "p", "strict": True, "schema": {"type": "object"}}},
            {"type": "json_object", "json_schema": {"type": "object"}},
        ),
        (
            {"type": "json_object", "schema": {"type": "object"}},
            {"type": "json_object", "json_schema": {"type": "object"}},
        ),
    ],
)
def test_response_format(fmt, expected):
    out = build(chat([{"role": "user", "content": "x"}], response_format=fmt))
    assert out.get("response_format") == expected


def test_tool_choice():
    tools = [
        {"type": "function", "function": {"name": "a", "parameters": {}, "strict": True}},
        {"type": "function", "function": {"name": "b", "parameters": {}}},
    ]
    msgs = [{"role": "user", "content": "x"}]
    assert build(chat(msgs, tools=tools, tool_choice="required"))["tool_choice"] == "REQUIRED"
    assert build(chat(msgs, tools=tools, tool_choice="none"))["tool_choice"] == "NONE"
    forced = build(chat(msgs, tools=tools, tool_choice={"type": "function", "function": {"name": "b"}}))
    assert forced["tool_choice"] == "REQUIRED"
    assert forced["tools"] == [{"type": "function", "function": {"name": "b", "parameters": {}}}]
    strict = build(chat(msgs, tools=tools))
    assert strict["strict_tools"] is True and "strict" not in strict["tools"][0]["function"]
    with pytest.raises(GatewayError) as e:
        build(chat(msgs, tools=tools, tool_choice={"type": "function", "function": {"name": "zzz"}}))
    assert e.value.status == 400 and e.value.param == "tool_choice"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logit_bias": {"1": 2}}, "logit_bias"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"service_tier": "flex"}, "service_tier"),
        ({"tools": [{"type": "code_interpreter"}]}, "tools"),
        ({"response_format": {"type": "grammar", "grammar": "x"}}, "response_format"),
    ],
)
def test_unsupported_parameters_are_400(extra, param):
    with pytest.raises(GatewayError) as e:
        build(chat([{"role": "user", "content": "x"}], **extra))
    assert e.value.status == 400 and e.value.param == param and e.value.code == "unsupported_parameter"


def test_unsupported_content_part_and_role():
    with pytest.raises(GatewayError) as e:
        build(chat([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]))
    assert e.value.status == 400 and e.value.param == "messages[0].content"
    with pytest.raises(GatewayError) as e:
        build(chat([{"role": "function", "name": "f", "content": "x"}]))
    assert e.value.status == 400 and e.value.param == "messages[0]"


def test_legacy_completions_request():
    body = {"model": "cohere/command-a-03-2025", "prompt": ["Say hi"], "max_tokens": 5, "echo": False, "n": 1}
    assert build(body, COMPLETIONS) == {
        "model": "command-a-03-2025",
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 5,
    }


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"echo": True}, "echo"),
        ({"suffix": "end"}, "suffix"),
        ({"best_of": 2}, "best_of"),
        ({"n": 3}, "n"),
        ({"logprobs": 2}, "logprobs"),
    ],
)
def test_legacy_completions_refusals(extra, param):
    body = {"model": "m", "prompt": "x", **extra}
    with pytest.raises(GatewayError) as e:
        build(body, COMPLETIONS)
    assert e.value.status == 400 and e.value.param == param
