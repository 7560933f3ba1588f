"""The Anthropic adapter's response translation, checked against Anthropic's own examples.

Each golden test cites the documentation page its Anthropic-side JSON comes from.
"""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from providers.anthropic import JSON_TOOL, AnthropicReply
from providers.base import CHAT, COMPLETIONS, CallContext
from tests.unit.providers.anthropic import ANTHROPIC

adapter, parse = ANTHROPIC.adapter, ANTHROPIC.parse


# -- responses ------------------------------------------------------------------------------------


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
    ctx = CallContext("m", reply=AnthropicReply(json_tool=True))
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
