"""The Cohere v2 dialect's response translation, checked against Cohere's own documented examples.

Golden source: https://docs.cohere.com/reference/chat response examples ("Default", "Tools"); each test names its own.
"""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from providers.base import CHAT, COMPLETIONS
from tests.unit.providers.cohere import COHERE

adapter, ctx, parse = COHERE.adapter, COHERE.ctx, COHERE.parse


# -- responses --------------------------------------------------------------------------------

# https://docs.cohere.com/reference/chat, "Default" example response (text shortened).
DOC_RESPONSE = {
    "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
    "message": {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "LLMs stand for Large Language Models, which are a type of neural network"}
        ],
    },
    "finish_reason": "COMPLETE",
    "usage": {
        "billed_units": {"input_tokens": 5, "output_tokens": 418},
        "tokens": {"input_tokens": 71, "output_tokens": 418},
    },
}

# https://docs.cohere.com/reference/chat, "Tools" example response.
DOC_TOOLS_RESPONSE = {
    "id": "9e5f00aa-bf1e-481a-abe3-0eceac18c3ec",
    "message": {
        "role": "assistant",
        "tool_plan": "I will first find the sales summary for 29th September 2023. Then, I will find the details of the products in the 'Electronics' category.",
        "tool_calls": [
            {
                "id": "query_daily_sales_report_hgxxmkby3wta",
                "type": "function",
                "function": {"name": "query_daily_sales_report", "arguments": '{"day": "2023-09-29"}'},
            },
            {
                "id": "query_product_catalog_rpg0z5h8yyz2",
                "type": "function",
                "function": {"name": "query_product_catalog", "arguments": '{"category": "Electronics"}'},
            },
        ],
    },
    "finish_reason": "TOOL_CALL",
    "usage": {
        "billed_units": {"input_tokens": 127, "output_tokens": 69},
        "tokens": {"input_tokens": 1032, "output_tokens": 124},
    },
}


def test_golden_response():
    out = parse(DOC_RESPONSE)
    assert out["id"] == "c14c80c3-18eb-4519-9460-6c92edd8cfb4"
    assert out["object"] == "chat.completion"
    assert out["model"] == "cohere/command-a-03-2025"
    assert out["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "LLMs stand for Large Language Models, which are a type of neural network",
                "refusal": None,
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert out["usage"] == {"prompt_tokens": 71, "completion_tokens": 418, "total_tokens": 489}


def test_golden_tool_call_response():
    out = parse(DOC_TOOLS_RESPONSE)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == DOC_TOOLS_RESPONSE["message"]["tool_plan"]
    assert choice["message"]["tool_calls"] == DOC_TOOLS_RESPONSE["message"]["tool_calls"]
    assert out["usage"] == {"prompt_tokens": 1032, "completion_tokens": 124, "total_tokens": 1156}


def test_usage_falls_back_to_billed_units():
    obj = {**DOC_RESPONSE, "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 418}}}
    assert parse(obj)["usage"] == {"prompt_tokens": 5, "completion_tokens": 418, "total_tokens": 423}


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("COMPLETE", "stop"),
        ("STOP_SEQUENCE", "stop"),
        ("MAX_TOKENS", "length"),
        ("TOOL_CALL", "tool_calls"),
        ("ERROR_TOXIC", "content_filter"),
    ],
)
def test_finish_reasons(reason, finish):
    assert parse({**DOC_RESPONSE, "finish_reason": reason})["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize("reason", ["ERROR", "TIMEOUT"])
def test_failed_generation_is_502(reason):
    with pytest.raises(GatewayError) as e:
        parse({**DOC_RESPONSE, "finish_reason": reason})
    assert e.value.status == 502 and reason in e.value.message


def test_logprobs_and_thinking_in_response():
    obj = {
        **DOC_RESPONSE,
        "message": {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm"},
                {"type": "text", "text": "Hi"},
                {"type": "text", "text": "!"},
            ],
        },
        "logprobs": [
            {"text": "Hi", "token_ids": [1, 2], "logprobs": [-0.5, -0.25]},
            {"text": "!", "token_ids": [3], "logprobs": [-0.1]},
        ],
    }
    msg = parse(obj)["choices"][0]
    assert msg["message"]["content"] == "Hi!" and msg["message"]["reasoning_content"] == "hmm"
    assert msg["logprobs"]["content"] == [
        {"token": "Hi", "logprob": -0.75, "bytes": [72, 105], "top_logprobs": []},
        {"token": "!", "logprob": -0.1, "bytes": [33], "top_logprobs": []},
    ]


def test_legacy_completion_response():
    out = parse(DOC_RESPONSE, COMPLETIONS)
    assert out["object"] == "text_completion"
    assert out["choices"] == [
        {
            "text": "LLMs stand for Large Language Models, which are a type of neural network",
            "index": 0,
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]


def test_bad_response():
    with pytest.raises(GatewayError) as e:
        adapter().parse_response(CHAT, b"<html>", ctx())
    assert e.value.status == 502 and e.value.code == "upstream_bad_response"
    with pytest.raises(GatewayError):
        parse({"id": "x"})
