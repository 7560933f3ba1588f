"""The Anthropic adapter's request, response and error translation, checked against Anthropic's own examples.

Each golden test cites the documentation page its Anthropic-side JSON comes from.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.config import ProviderConfig
from gateway.errors import GatewayError
from providers.anthropic import JSON_TOOL, AnthropicAdapter
from providers.base import CHAT, COMPLETIONS, EMBEDDINGS, CallContext, Target

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}},
    "required": ["location"],
}


def adapter(**cfg: Any) -> AnthropicAdapter:
    return AnthropicAdapter("anthropic", ProviderConfig(kind="anthropic", api_key="sk-ant-provider", **cfg))


def build(body: dict[str, Any], endpoint: str = CHAT, target: Target | None = None, **cfg: Any) -> dict[str, Any]:
    req = adapter(**cfg).build_request(endpoint, body, target or Target("claude-sonnet-4-5"), CallContext("m"))
    return orjson.loads(req.body)


def chat(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": "anthropic/claude-sonnet-4-5", "messages": messages, **extra}


def refused(body: dict[str, Any], endpoint: str = CHAT) -> GatewayError:
    with pytest.raises(GatewayError) as e:
        build(body, endpoint)
    assert e.value.status == 400
    return e.value


# -- requests -------------------------------------------------------------------------------------


def test_basic_request_matches_documented_example():
    # https://platform.claude.com/docs/en/build-with-claude/working-with-messages ("Basic request and response")
    req = adapter().build_request(
        CHAT,
        chat([{"role": "user", "content": "Hello, Claude"}], max_tokens=1024),
        Target("claude-opus-4-7"),
        CallContext("anthropic/claude-opus-4-7"),
    )
    assert req.method == "POST"
    assert req.url == "https://api.anthropic.com/v1/messages"
    assert req.headers["x-api-key"] == "sk-ant-provider"
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert req.headers["content-type"] == "application/json"
    assert "authorization" not in req.headers
    assert req.stream is False
    assert orjson.loads(req.body) == {
        "model": "claude-opus-4-7",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hello, Claude"}],
    }


def test_base_url_version_and_extra_headers_come_from_the_config():
    a = adapter(base_url="http://127.0.0.1:9/v1", api_version="2099-01-01", headers={"Anthropic-Beta": "x-2025"})
    req = a.build_request(CHAT, chat([{"role": "user", "content": "hi"}]), Target("c"), CallContext("m"))
    assert req.url == "http://127.0.0.1:9/v1/messages"
    assert req.headers["anthropic-version"] == "2099-01-01"
    assert req.headers["anthropic-beta"] == "x-2025"


def test_streaming_tool_request_matches_documented_example():
    # https://platform.claude.com/docs/en/build-with-claude/streaming ("Streaming request with tool use")
    body = chat(
        [{"role": "user", "content": "What is the weather like in San Francisco?"}],
        max_tokens=1024,
        stream=True,
        stream_options={"include_usage": True},
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Get the current weather in a given location",
                    "parameters": WEATHER_SCHEMA,
                },
            }
        ],
        tool_choice="required",
    )
    req = adapter().build_request(CHAT, body, Target("claude-sonnet-4-5"), CallContext("m"))
    assert req.stream is True
    assert orjson.loads(req.body) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "tools": [
            {
                "name": "get_weather",
                "description": "Get the current weather in a given location",
                "input_schema": WEATHER_SCHEMA,
            }
        ],
        "tool_choice": {"type": "any"},
        "messages": [{"role": "user", "content": "What is the weather like in San Francisco?"}],
        "stream": True,
    }


def test_tool_round_trip_matches_documented_conversation():
    # https://platform.claude.com/docs/en/agents-and-tools/tool-use/overview (the get_weather exchange:
    # an assistant turn with text and a tool_use block, then a user turn with its tool_result)
    out = build(
        chat(
            [
                {"role": "system", "content": "You are a weather bot."},
                {"role": "user", "content": "What's the weather like in San Francisco?"},
                {
                    "role": "assistant",
                    "content": "I'll check the current weather in San Francisco for you.",
                    "tool_calls": [
                        {
                            "id": "toolu_01A09q90qw90lq917835lq9",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"location": "San Francisco, CA", "unit": "celsius"}',
                            },
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"},
            ]
        )
    )
    assert out["system"] == "You are a weather bot."
    assert out["messages"] == [
        {"role": "user", "content": "What's the weather like in San Francisco?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "name": "get_weather",
                    "input": {"location": "San Francisco, CA", "unit": "celsius"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"}
            ],
        },
    ]


def test_parallel_tool_results_share_one_user_turn_and_lead_it():
    # https://platform.claude.com/docs/en/agents-and-tools/tool-use/implement-tool-use (parallel tool use:
    # all results in one user message, tool_result blocks before any text)
    calls = [{"id": f"toolu_{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in (1, 2)]
    out = build(
        chat(
            [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": None, "tool_calls": calls},
                {"role": "tool", "tool_call_id": "toolu_1", "content": [{"type": "text", "text": "one"}]},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "two"},
                {"role": "user", "content": "and now?"},
            ]
        )
    )
    assert out["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
            {"type": "tool_use", "id": "toolu_2", "name": "f", "input": {}},
        ],
    }
    assert out["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "one"}]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "two"},
            {"type": "text", "text": "and now?"},
        ],
    }
    assert len(out["messages"]) == 3


def test_system_and_developer_messages_go_to_top_level_system_and_same_roles_merge():
    out = build(
        chat(
            [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                {"role": "user", "content": "Hi"},
                {"role": "user", "content": [{"type": "text", "text": "there"}]},
            ]
        )
    )
    assert out["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Answer in French."}]
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]}
    ]


def test_images_become_base64_and_url_sources():
    # https://platform.claude.com/docs/en/build-with-claude/vision (base64 and URL image sources)
    url = "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"
    out = build(
        chat(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}},
                        {"type": "image_url", "image_url": {"url": url, "detail": "high"}},
                        {"type": "text", "text": "Describe these images."},
                    ],
                }
            ]
        )
    )
    assert out["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
        {"type": "image", "source": {"type": "url", "url": url}},
        {"type": "text", "text": "Describe these images."},
    ]


def test_inline_pdf_becomes_a_document_block_and_other_inputs_are_refused():
    pdf = {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
    out = build(chat([{"role": "user", "content": [pdf]}]))
    assert out["messages"][0]["content"] == [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}
    ]
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    assert refused(chat([{"role": "user", "content": [audio]}])).param == "messages[0].content[0]"
    bad = {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}
    assert refused(chat([{"role": "user", "content": [bad]}])).param == "messages[0].content[0].image_url.url"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("none", {"type": "none"}),
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_mapping(choice, expected):
    # https://platform.claude.com/docs/en/agents-and-tools/tool-use/implement-tool-use ("Forcing tool use")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}]
    out = build(chat([{"role": "user", "content": "x"}], tools=tools, tool_choice=choice))
    assert out["tool_choice"] == expected


def test_parallel_tool_calls_false_disables_parallel_tool_use():
    tools = [{"type": "function", "function": {"name": "f", "strict": True}}]
    out = build(chat([{"role": "user", "content": "x"}], tools=tools, parallel_tool_calls=False))
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert out["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}, "strict": True}]
    out = build(
        chat([{"role": "user", "content": "x"}], tools=tools, tool_choice="required", parallel_tool_calls=False)
    )
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_sampling_stop_user_and_max_tokens():
    out = build(
        chat(
            [{"role": "user", "content": "x"}],
            temperature=0.2,
            top_p=0.9,
            top_k=40,
            stop="END",
            user="user-123",
            max_completion_tokens=50,
            max_tokens=999,
            n=1,
            presence_penalty=0,
            logprobs=False,
            seed=None,
        )
    )
    assert out["temperature"] == 0.2
    assert out["top_p"] == 0.9
    assert out["top_k"] == 40
    assert out["stop_sequences"] == ["END"]
    assert out["metadata"] == {"user_id": "user-123"}
    assert out["max_tokens"] == 50  # max_completion_tokens wins over the deprecated max_tokens
    assert "seed" not in out and "n" not in out and "logprobs" not in out


def test_max_tokens_defaults():
    msgs = [{"role": "user", "content": "x"}]
    assert build(chat(msgs))["max_tokens"] == 4096
    assert build(chat(msgs), target=Target("c", default_max_tokens=777))["max_tokens"] == 777
    assert build({"model": "m", "prompt": "x"}, COMPLETIONS)["max_tokens"] == 16
    assert refused(chat(msgs, max_tokens=0)).param == "max_tokens"


def test_temperature_above_one_names_the_parameter_and_provider():
    err = refused(chat([{"role": "user", "content": "x"}], temperature=1.5))
    assert err.param == "temperature"
    assert "anthropic" in err.message and "1.5" in err.message


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("n", 2),
        ("logprobs", True),
        ("top_logprobs", 2),
        ("logit_bias", {"50256": -100}),
        ("presence_penalty", 0.5),
        ("frequency_penalty", -1),
        ("seed", 42),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("modalities", ["text", "audio"]),
        ("store", True),
        ("reasoning_effort", "high"),
        ("service_tier", "flex"),
        ("some_vendor_extension", True),
    ],
)
def test_parameters_anthropic_cannot_honour_are_400_naming_them(param, value):
    err = refused(chat([{"role": "user", "content": "x"}], **{param: value}))
    assert err.param == param
    assert err.code == "unsupported_parameter"
    assert "anthropic" in err.message


def test_response_format_json_schema_uses_structured_outputs():
    # https://platform.claude.com/docs/en/build-with-claude/structured-outputs (output_config.format)
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    rf = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}
    out = build(chat([{"role": "user", "content": "x"}], response_format=rf))
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "tools" not in out


def test_response_format_json_object_forces_the_json_tool():
    ctx = CallContext("m")
    body = chat([{"role": "user", "content": "x"}], response_format={"type": "json_object"})
    out = orjson.loads(adapter().build_request(CHAT, body, Target("c"), ctx).body)
    assert out["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    assert [t["name"] for t in out["tools"]] == [JSON_TOOL]
    assert ctx.extra["json_tool"] is True
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert refused({**body, "tools": tools}).param == "response_format"


def test_invalid_messages_are_400_with_the_path():
    bad_args = {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
    err = refused(chat([{"role": "assistant", "content": None, "tool_calls": [bad_args]}]))
    assert err.param == "messages[0].tool_calls[0].function.arguments"
    assert refused(chat([{"role": "tool", "content": "x"}])).param == "messages[0].tool_call_id"
    assert refused(chat([{"role": "narrator", "content": "x"}])).param == "messages[0].role"
    assert refused(chat([{"role": "user", "content": "x"}], tool_choice="required")).param == "tool_choice"


def test_completions_prompt_becomes_one_user_message():
    body = {"model": "m", "prompt": ["Say hi"], "max_tokens": 5, "echo": False, "best_of": 1, "stream": True}
    out = build(body, COMPLETIONS)
    assert out == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 5,
        "stream": True,
        "messages": [{"role": "user", "content": "Say hi"}],
    }


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("prompt", ["a", "b"]),
        ("prompt", [1, 2, 3]),
        ("echo", True),
        ("logprobs", 2),
        ("suffix", "tail"),
        ("best_of", 3),
        ("n", 2),
    ],
)
def test_completions_parameters_anthropic_cannot_honour(param, value):
    assert refused({"model": "m", "prompt": "x", param: value}, COMPLETIONS).param == param


def test_embeddings_are_not_an_anthropic_endpoint():
    with pytest.raises(GatewayError) as e:
        adapter().build_request(EMBEDDINGS, {"model": "m", "input": "x"}, Target("c"), CallContext("m"))
    assert e.value.status == 400 and e.value.code == "unsupported_endpoint"


# -- responses ------------------------------------------------------------------------------------


def parse(payload: dict[str, Any], endpoint: str = CHAT, ctx: CallContext | None = None) -> dict[str, Any]:
    return adapter().parse_response(endpoint, orjson.dumps(payload), ctx or CallContext("anthropic/claude", created=7))


def test_documented_response_becomes_a_chat_completion():
    # https://platform.claude.com/docs/en/api/messages (the example Message object)
    out = parse(
        {
            "content": [{"text": "Hi! My name is Claude.", "type": "text"}],
            "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
            "model": "claude-3-7-sonnet-20250219",
            "role": "assistant",
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "type": "message",
            "usage": {"input_tokens": 2095, "output_tokens": 503},
        }
    )
    assert out == {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "object": "chat.completion",
        "created": 7,
        "model": "anthropic/claude",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi! My name is Claude.", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 2095,
            "completion_tokens": 503,
            "total_tokens": 2598,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


def test_documented_tool_use_response_becomes_tool_calls():
    # https://platform.claude.com/docs/en/agents-and-tools/tool-use/overview (the tool_use response)
    out = parse(
        {
            "id": "msg_01Aq9w938a90dw8q",
            "model": "claude-sonnet-4-5",
            "stop_reason": "tool_use",
            "role": "assistant",
            "content": [
                {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "name": "get_weather",
                    "input": {"location": "San Francisco, CA", "unit": "celsius"},
                },
            ],
        }
    )
    assert "usage" not in out  # the example has none: the gateway estimates rather than record zeros
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll check the current weather in San Francisco for you."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_01A09q90qw90lq917835lq9",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location":"San Francisco, CA","unit":"celsius"}'},
        }
    ]


def test_only_tool_calls_means_null_content():
    block = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    out = parse({"id": "m", "type": "message", "content": [block], "stop_reason": "tool_use"})
    assert out["choices"][0]["message"]["content"] is None
    assert out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{}"


def test_thinking_blocks_are_left_out():
    # https://platform.claude.com/docs/en/build-with-claude/extended-thinking (a thinking block before the text)
    out = parse(
        {
            "id": "msg_1",
            "type": "message",
            "content": [
                {"type": "thinking", "thinking": "Let me analyze this step by step...", "signature": "WaUjzkypQ2mU"},
                {"type": "text", "text": "Based on my analysis..."},
            ],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 2},
        }
    )
    assert out["choices"][0]["message"]["content"] == "Based on my analysis..."


def test_cache_tokens_count_as_prompt_tokens():
    # https://platform.claude.com/docs/en/build-with-claude/prompt-caching (usage: cache write and read fields)
    usage = {
        "input_tokens": 50,
        "cache_creation_input_tokens": 248,
        "cache_read_input_tokens": 1800,
        "output_tokens": 9,
    }
    out = parse({"id": "m", "type": "message", "content": [], "stop_reason": "end_turn", "usage": usage})
    assert out["usage"] == {
        "prompt_tokens": 2098,
        "completion_tokens": 9,
        "total_tokens": 2107,
        # The writes too, which Anthropic bills dearer than input (the cost needs them).
        "prompt_tokens_details": {"cached_tokens": 1800, "cache_write_tokens": 248},
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ],
)
def test_stop_reasons(stop_reason, finish):
    # https://platform.claude.com/docs/en/build-with-claude/handling-stop-reasons
    out = parse({"id": "m", "type": "message", "content": [], "stop_reason": stop_reason})
    assert out["choices"][0]["finish_reason"] == finish


def test_json_tool_answer_becomes_the_content():
    ctx = CallContext("m", extra={"json_tool": True})
    block = {"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL, "input": {"answer": 42}}
    out = parse({"id": "m", "type": "message", "content": [block], "stop_reason": "tool_use"}, ctx=ctx)
    assert out["choices"][0]["message"] == {"role": "assistant", "content": '{"answer":42}', "refusal": None}
    assert out["choices"][0]["finish_reason"] == "stop"


def test_completions_response_is_a_text_completion():
    body = {
        "id": "msg_9",
        "type": "message",
        "content": [{"type": "text", "text": "hello"}],
        "stop_reason": "max_tokens",
    }
    out = parse({**body, "usage": {"input_tokens": 3, "output_tokens": 1}}, COMPLETIONS)
    assert out["object"] == "text_completion"
    assert out["choices"] == [{"text": "hello", "index": 0, "logprobs": None, "finish_reason": "length"}]
    assert out["usage"]["total_tokens"] == 4


@pytest.mark.parametrize(
    "payload",
    [b"<html>oops</html>", b'{"type": "error", "error": {"type": "api_error", "message": "x"}}', b"[]"],
)
def test_a_body_that_is_not_a_message_is_502(payload):
    with pytest.raises(GatewayError) as e:
        adapter().parse_response(CHAT, payload, CallContext("m"))
    assert e.value.status == 502 and e.value.code == "upstream_bad_response"


# -- errors ---------------------------------------------------------------------------------------


def test_documented_error_shape_keeps_status_type_and_message():
    # https://platform.claude.com/docs/en/api/errors ("Error shapes")
    payload = {
        "type": "error",
        "error": {"type": "not_found_error", "message": "The requested resource could not be found."},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
    }
    err = adapter().parse_error(404, orjson.dumps(payload))
    assert err.status == 404
    assert err.type == "not_found_error"
    assert err.message == "anthropic: The requested resource could not be found."


@pytest.mark.parametrize(
    ("status", "kind", "expected"),
    [(529, "overloaded_error", 503), (500, "overloaded_error", 503), (429, "rate_limit_error", 429)],
)
def test_overload_becomes_503_and_rate_limit_stays_429(status, kind, expected):
    # https://platform.claude.com/docs/en/api/errors (429 rate_limit_error, 529 overloaded_error)
    err = adapter().parse_error(status, orjson.dumps({"type": "error", "error": {"type": kind, "message": "m"}}))
    assert (err.status, err.type, err.code) == (expected, kind, kind)


def test_non_json_error_body_keeps_status_and_text():
    err = adapter().parse_error(502, b"upstream connect error or disconnect/reset before headers")
    assert err.status == 502
    assert err.message == "anthropic: upstream connect error or disconnect/reset before headers"
    assert adapter().parse_error(529, b"").status == 503
