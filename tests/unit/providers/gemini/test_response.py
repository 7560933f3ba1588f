"""GeminiAdapter's response translation, checked against Google's own documented examples.

Each golden test names the page its Gemini-side JSON comes from. The OpenAI side is the request a
client would send for the same conversation.
"""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from providers.base import CHAT, COMPLETIONS, CallContext
from tests.unit.providers.gemini import GEMINI

adapter, parse = GEMINI.adapter, GEMINI.parse


# -- responses (golden) ------------------------------------------------------------------------

SAFETY = [
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
]


def test_golden_text_response_with_thinking_usage():
    # https://firebase.google.com/docs/ai-logic/server-prompt-templates/get-started ("example test response").
    payload = {
        "candidates": [
            {
                "content": {"parts": [{"text": "```\n---\n **INVOICE**\n---\n```"}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 34,
            "candidatesTokenCount": 418,
            "totalTokenCount": 890,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 34}],
            "thoughtsTokenCount": 438,
        },
        "modelVersion": "gemini-3-flash-preview",
        "responseId": "3w4Vad6yF-y1vdIP_q_zgAw",
    }
    out = parse(payload)
    assert out == {
        "id": "chatcmpl-3w4Vad6yF-y1vdIP_q_zgAw",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gemini/gemini-2.0-flash",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "```\n---\n **INVOICE**\n---\n```", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        # Thinking tokens are billed as output: completion = 418 + 438, and the total matches Google's 890.
        "usage": {
            "prompt_tokens": 34,
            "completion_tokens": 856,
            "total_tokens": 890,
            "completion_tokens_details": {"reasoning_tokens": 438},
        },
    }


def test_golden_function_call_response():
    # https://github.com/google-gemini/cookbook/blob/main/quickstarts/rest/Function_calling_REST.ipynb
    # ("Single-turn curl sample" output): a functionCall with finishReason STOP.
    payload = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {
                            "functionCall": {
                                "name": "find_theaters",
                                "args": {"movie": "Barbie", "location": "Mountain View, CA"},
                            }
                        }
                    ],
                    "role": "model",
                },
                "finishReason": "STOP",
                "index": 0,
                "safetyRatings": SAFETY,
            }
        ],
        "promptFeedback": {"safetyRatings": SAFETY},
    }
    out = parse(payload)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and len(call["id"]) > 10
    assert call["type"] == "function"
    assert call["function"] == {
        "name": "find_theaters",
        "arguments": '{"movie":"Barbie","location":"Mountain View, CA"}',
    }
    assert "extra_content" not in call and "usage" not in out


def test_thought_signature_is_handed_out_and_thoughts_are_not_content():
    payload = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "I should check the weather.", "thought": True},
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                            "thoughtSignature": "CiQB",
                        },
                    ],
                    "role": "model",
                },
                "finishReason": "STOP",
            }
        ]
    }
    msg = parse(payload)["choices"][0]["message"]
    assert msg["content"] is None
    assert msg["tool_calls"][0]["extra_content"] == {"google": {"thought_signature": "CiQB"}}


def test_signatures_handed_out_are_reported_by_call_id():
    # The pipeline keeps what ctx.signatures reports (gateway/pipeline/signatures.py): every call's
    # own signature, and only calls that had one (Gemini signs the first of parallel calls).
    sig_call = {"functionCall": {"name": "a", "args": {}}, "thoughtSignature": "c2lnMQ=="}
    bare_call = {"functionCall": {"name": "b", "args": {}}}
    payload = {
        "candidates": [
            {"content": {"parts": [sig_call, bare_call], "role": "model"}, "finishReason": "STOP", "index": 0},
            {"content": {"parts": [{**sig_call, "thoughtSignature": "c2lnMg=="}], "role": "model"}, "index": 1},
        ]
    }
    ctx = GEMINI.ctx()
    choices = parse(payload, ctx=ctx)["choices"]
    first, second = (ch["message"]["tool_calls"] for ch in choices)
    assert ctx.signatures == {first[0]["id"]: "c2lnMQ==", second[0]["id"]: "c2lnMg=="}
    assert first[1]["id"] not in ctx.signatures


def test_text_answers_report_no_signatures():
    ctx = GEMINI.ctx()
    parse({"candidates": [{"content": {"parts": [{"text": "hi"}], "role": "model"}, "finishReason": "STOP"}]}, ctx=ctx)
    assert ctx.signatures is None


def test_golden_multi_turn_text_response():
    # https://github.com/google-gemini/cookbook/blob/main/quickstarts/rest/Function_calling_REST.ipynb (turn 2 output)
    text = "OK. I found two theaters in Mountain View that are showing the Barbie movie: AMC Mountain View 16 and Regal Edwards 14."
    payload = {
        "candidates": [
            {
                "content": {"parts": [{"text": text}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
                "safetyRatings": SAFETY,
            }
        ]
    }
    assert parse(payload)["choices"][0]["message"]["content"] == text


def test_candidates_become_choices_in_index_order():
    payload = {
        "candidates": [
            {
                "content": {"parts": [{"text": "b"}, {"text": "b2"}], "role": "model"},
                "finishReason": "MAX_TOKENS",
                "index": 1,
            },
            {"content": {"parts": [{"text": "a"}], "role": "model"}, "finishReason": "SAFETY"},
        ],
        "usageMetadata": {
            "promptTokenCount": 3,
            "candidatesTokenCount": 4,
            "totalTokenCount": 7,
            "cachedContentTokenCount": 2,
        },
    }
    out = parse(payload)
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in out["choices"]] == [
        (0, "a", "content_filter"),
        (1, "bb2", "length"),
    ]
    assert out["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 2},
    }


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
    ],
)
def test_finish_reasons(reason, expected):
    # https://ai.google.dev/api/generate-content#FinishReason
    payload = {"candidates": [{"content": {"parts": [{"text": "x"}], "role": "model"}, "finishReason": reason}]}
    assert parse(payload)["choices"][0]["finish_reason"] == expected


def test_golden_blocked_prompt_is_a_400_content_filter():
    # https://github.com/google-gemini/cookbook/blob/main/quickstarts/rest/Safety_REST.ipynb ("Prompt Feedback"):
    # a blocked prompt has promptFeedback.blockReason and no candidates.
    payload = {
        "promptFeedback": {
            "blockReason": "SAFETY",
            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "MEDIUM"}],
        }
    }
    with pytest.raises(GatewayError) as e:
        parse(payload)
    err = e.value
    assert (err.status, err.type, err.code, err.param) == (400, "invalid_request_error", "content_filter", "messages")
    assert "SAFETY" in err.message and err.message.startswith("gemini: ")
    with pytest.raises(GatewayError) as e:
        parse(payload, COMPLETIONS)
    assert e.value.param == "prompt"


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"candidates": "x"}', b"{}"])
def test_malformed_responses_are_502(body):
    ctx = CallContext("gemini/m")
    with pytest.raises(GatewayError) as e:
        adapter().parse_response(CHAT, body, ctx)
    assert e.value.status == 502 and e.value.code == "upstream_bad_response"


def test_logprobs_result():
    # LogprobsResult: https://ai.google.dev/api/generate-content#LogprobsResult
    cand = {
        "content": {"parts": [{"text": "Hi there"}], "role": "model"},
        "finishReason": "STOP",
        "logprobsResult": {
            "topCandidates": [
                {"candidates": [{"token": "Hi", "logProbability": -0.1}, {"token": "Hello", "logProbability": -2.5}]},
                {"candidates": [{"token": " there", "logProbability": -0.2}]},
            ],
            "chosenCandidates": [{"token": "Hi", "logProbability": -0.1}, {"token": " there", "logProbability": -0.2}],
        },
    }
    lp = parse({"candidates": [cand]})["choices"][0]["logprobs"]
    assert lp["content"][0] == {
        "token": "Hi",
        "logprob": -0.1,
        "bytes": [72, 105],
        "top_logprobs": [
            {"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
            {"token": "Hello", "logprob": -2.5, "bytes": list(b"Hello")},
        ],
    }
    clp = parse({"candidates": [cand]}, COMPLETIONS)["choices"][0]["logprobs"]
    assert clp == {
        "tokens": ["Hi", " there"],
        "token_logprobs": [-0.1, -0.2],
        "top_logprobs": [{"Hi": -0.1, "Hello": -2.5}, {" there": -0.2}],
        "text_offset": [0, 2],
    }


def test_completion_response_shape():
    payload = {
        "candidates": [
            {"content": {"parts": [{"text": " there was a cat."}], "role": "model"}, "finishReason": "STOP"}
        ],
        "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 5, "totalTokenCount": 9},
    }
    out = parse(payload, COMPLETIONS)
    assert out["object"] == "text_completion" and out["id"].startswith("cmpl-")
    assert out["choices"] == [{"text": " there was a cat.", "index": 0, "logprobs": None, "finish_reason": "stop"}]
    assert out["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}
