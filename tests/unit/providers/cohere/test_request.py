"""The Cohere v2 dialect on plain dicts, checked against Cohere's own documented examples.

Golden sources (each test names its own):
- https://docs.cohere.com/reference/chat: request/response examples ("Default", "Tools")
- https://docs.cohere.com/reference/chat-stream: the documented "Streaming" event sequence
- https://docs.cohere.com/v2/docs/tool-use-streaming: the tool-calling step's event stream
- https://docs.cohere.com/reference/embed: the v2 embed request/response
"""

from __future__ import annotations

import base64
import struct

import orjson
import pytest

from gateway.config import ProviderConfig
from gateway.errors import GatewayError
from gateway.wire.sse import SSEParser
from providers.base import CHAT, COMPLETIONS, EMBEDDINGS, CallContext, SSEEvent, Target
from providers.cohere import CohereAdapter

KEY = "co-secret-key"


def adapter(**kw) -> CohereAdapter:
    return CohereAdapter("cohere", ProviderConfig(kind="cohere", api_key=KEY, **kw))


def ctx(**kw) -> CallContext:
    return CallContext(client_model="cohere/command-a-03-2025", **kw)


def build(body: dict, endpoint: str = CHAT, c: CallContext | None = None) -> dict:
    req = adapter().build_request(endpoint, body, Target("command-a-03-2025"), c or ctx())
    return orjson.loads(req.body)


def chat(messages: list, **kw) -> dict:
    return {"model": "cohere/command-a-03-2025", "messages": messages, **kw}


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


def parse(obj: dict, endpoint: str = CHAT) -> dict:
    return adapter().parse_response(endpoint, orjson.dumps(obj), ctx())


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


# -- streams ----------------------------------------------------------------------------------

# https://docs.cohere.com/reference/chat-stream, the "Streaming" example, as SSE on the wire
# (event names as the reference lists them; the translator keys on each event's `type`).
DOC_STREAM_EVENTS = [
    (
        "stream-start",
        {
            "type": "message-start",
            "id": "29f14a5a-11de-4cae-9800-25e4747408ea",
            "delta": {"message": {"role": "assistant"}},
        },
    ),
    (
        "text-generation",
        {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
    ),
    *[
        ("text-generation", {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": t}}}})
        for t in ["Hello", "!", " How", " can", " I", " help", " you", " today", "?"]
    ],
    ("text-generation", {"type": "content-end", "index": 0}),
    (
        "stream-end",
        {
            "type": "message-end",
            "delta": {
                "finish_reason": "COMPLETE",
                "usage": {
                    "billed_units": {"input_tokens": 3, "output_tokens": 9},
                    "tokens": {"input_tokens": 69, "output_tokens": 9},
                },
            },
        },
    ),
]


def sse_bytes(events: list[tuple[str, dict]]) -> bytes:
    return b"".join(b"event: " + n.encode() + b"\r\ndata: " + orjson.dumps(d) + b"\r\n\r\n" for n, d in events)


def run_stream(raw: bytes, c: CallContext, step: int, endpoint: str = CHAT) -> tuple[list[dict], object]:
    """Feed ``raw`` in ``step``-byte pieces through SSEParser and the translator."""
    parser, tr = SSEParser(), adapter().stream_translator(endpoint, c)
    out: list[bytes] = []
    for i in range(0, len(raw), step):
        for ev in parser.feed(raw[i : i + step]):
            out.extend(tr.feed(ev))
    for ev in parser.close():
        out.extend(tr.feed(ev))
    return [orjson.loads(p) for p in out], tr


@pytest.mark.parametrize("step", [1, 7, 64, 100_000])
def test_golden_stream_split_at_odd_boundaries(step):
    chunks, tr = run_stream(sse_bytes(DOC_STREAM_EVENTS), ctx(include_usage=True), step)
    assert tr.finished is True
    assert tr.usage == {"prompt_tokens": 69, "completion_tokens": 9, "total_tokens": 78}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(ch["id"] == "29f14a5a-11de-4cae-9800-25e4747408ea" for ch in chunks)
    assert all(ch["object"] == "chat.completion.chunk" and ch["model"] == "cohere/command-a-03-2025" for ch in chunks)
    text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch["choices"])
    assert text == "Hello! How can I help you today?"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1] == {
        **chunks[-1],
        "choices": [],
        "usage": {"prompt_tokens": 69, "completion_tokens": 9, "total_tokens": 78},
    }
    assert all(ch["usage"] is None for ch in chunks[:-1])


def test_stream_without_include_usage_has_no_usage_chunk():
    chunks, tr = run_stream(sse_bytes(DOC_STREAM_EVENTS), ctx(), 13)
    assert all("usage" not in ch for ch in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert tr.usage["prompt_tokens"] == 69  # still captured for accounting
    assert tr.content_chunks == 9


def _tool_deltas(index: int, pieces: list[str]) -> list[tuple[str, dict]]:
    return [
        (
            "tool-call-delta",
            {
                "type": "tool-call-delta",
                "index": index,
                "delta": {"message": {"tool_calls": {"function": {"arguments": p}}}},
            },
        )
        for p in pieces
    ]


def _tool_start(index: int, call_id: str) -> tuple[str, dict]:
    call = {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    return ("tool-call-start", {"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls": call}}})


# https://docs.cohere.com/v2/docs/tool-use-streaming, "Tool calling step" example stream, as wire JSON.
DOC_TOOL_STREAM = [
    (
        "message-start",
        {
            "type": "message-start",
            "id": "fba98ad3-e5a1-413c-a8de-84fbf9baabf7",
            "delta": {
                "message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
            },
        },
    ),
    *[
        ("tool-plan-delta", {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": t}}})
        for t in ["I", " will", " search", " for", " the", " weather", " in", " Madrid", " and", " Brasilia", "."]
    ],
    _tool_start(0, "get_weather_p1t92w7gfgq7"),
    *_tool_deltas(0, ['{\n    "', "location", '":', ' "', "Madrid", '"', "\n", "}"]),
    ("tool-call-end", {"type": "tool-call-end", "index": 0}),
    _tool_start(1, "get_weather_ay6nmvjgp9vn"),
    *_tool_deltas(1, ['{\n    "', "location", '":', ' "', "Bras", "ilia", '"', "\n", "}"]),
    ("tool-call-end", {"type": "tool-call-end", "index": 1}),
    (
        "message-end",
        {
            "type": "message-end",
            "delta": {
                "finish_reason": "TOOL_CALL",
                "usage": {
                    "billed_units": {"input_tokens": 37, "output_tokens": 28},
                    "tokens": {"input_tokens": 913, "output_tokens": 83},
                },
            },
        },
    ),
]


def test_golden_tool_call_stream():
    chunks, tr = run_stream(sse_bytes(DOC_TOOL_STREAM), ctx(), 5)
    deltas = [ch["choices"][0]["delta"] for ch in chunks]
    assert "".join(d.get("content") or "" for d in deltas) == "I will search for the weather in Madrid and Brasilia."
    calls: dict[int, dict] = {}
    for d in deltas:
        for tc in d.get("tool_calls") or ():
            slot = calls.setdefault(tc["index"], {"id": None, "name": None, "arguments": ""})
            slot["id"] = tc.get("id") or slot["id"]
            slot["name"] = (tc.get("function") or {}).get("name") or slot["name"]
            slot["arguments"] += (tc.get("function") or {}).get("arguments") or ""
    assert calls == {
        0: {"id": "get_weather_p1t92w7gfgq7", "name": "get_weather", "arguments": '{\n    "location": "Madrid"\n}'},
        1: {"id": "get_weather_ay6nmvjgp9vn", "name": "get_weather", "arguments": '{\n    "location": "Brasilia"\n}'},
    }
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert tr.usage == {"prompt_tokens": 913, "completion_tokens": 83, "total_tokens": 996}


def test_unknown_and_citation_events_are_ignored():
    tr = adapter().stream_translator(CHAT, ctx())
    for ev in (
        SSEEvent(
            "citation-start", b'{"type":"citation-start","index":0,"delta":{"message":{"citations":{"start":1}}}}'
        ),
        SSEEvent("citation-end", b'{"type":"citation-end","index":0}'),
        SSEEvent("debug", b'{"type":"debug","prompt":"x"}'),
        SSEEvent(None, b'{"type":"some-future-event"}'),
        SSEEvent(None, b""),
    ):
        assert tr.feed(ev) == []
    assert tr.finished is False


def test_stream_error_finish_raises():
    tr = adapter().stream_translator(CHAT, ctx())
    end = {"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "internal failure"}}
    with pytest.raises(GatewayError) as e:
        tr.feed(SSEEvent("message-end", orjson.dumps(end)))
    assert e.value.status == 502 and "internal failure" in e.value.message


def test_stream_error_event_and_garbage_raise():
    tr = adapter().stream_translator(CHAT, ctx())
    with pytest.raises(GatewayError) as e:
        tr.feed(SSEEvent(None, b'{"message":"too many tokens"}'))
    assert "too many tokens" in e.value.message
    with pytest.raises(GatewayError) as e:
        tr.feed(SSEEvent(None, b"{not json"))
    assert e.value.code == "upstream_bad_response"


def test_legacy_completions_stream():
    chunks, _ = run_stream(sse_bytes(DOC_STREAM_EVENTS), ctx(include_usage=True), 9, COMPLETIONS)
    assert all(ch["object"] == "text_completion" for ch in chunks)
    assert "".join(ch["choices"][0]["text"] for ch in chunks if ch["choices"]) == "Hello! How can I help you today?"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 78


# -- embeddings -------------------------------------------------------------------------------


def test_golden_embed_request():
    # https://docs.cohere.com/reference/embed: texts, model, input_type, embedding_types.
    c = ctx()
    req = adapter().build_request(
        EMBEDDINGS,
        {
            "model": "cohere/embed-v4.0",
            "input": ["hello", "goodbye"],
            "input_type": "classification",
            "dimensions": 256,
        },
        Target("embed-v4.0"),
        c,
    )
    assert req.url == "https://api.cohere.com/v2/embed"
    assert orjson.loads(req.body) == {
        "model": "embed-v4.0",
        "texts": ["hello", "goodbye"],
        "input_type": "classification",
        "embedding_types": ["float"],
        "output_dimension": 256,
    }
    default = adapter().build_request(EMBEDDINGS, {"model": "m", "input": "x"}, Target("embed-v4.0"), ctx())
    assert orjson.loads(default.body)["input_type"] == "search_document"
    assert orjson.loads(default.body)["texts"] == ["x"]


def test_embed_refuses_token_input_and_unknown_fields():
    for body, param in (({"input": [[1, 2]]}, "input"), ({"input": "x", "foo": 1}, "foo")):
        with pytest.raises(GatewayError) as e:
            adapter().build_request(EMBEDDINGS, {"model": "m", **body}, Target("e"), ctx())
        assert e.value.param == param


EMBED_RESPONSE = {
    "id": "da6e531f-7ec6-4b93-8ed2-b2ea6a7c5f79",
    "embeddings": {"float": [[0.016296387, -0.008354187, -0.04699707], [-0.02960205, 0.0074768066, -0.038757324]]},
    "texts": ["hello", "goodbye"],
    "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 2}},
    "response_type": "embeddings_by_type",
}


@pytest.mark.parametrize("fmt", ["float", "base64"])
def test_embed_response(fmt):
    c = ctx()
    a = adapter()
    a.build_request(EMBEDDINGS, {"model": "m", "input": ["hello", "goodbye"], "encoding_format": fmt}, Target("e"), c)
    out = a.parse_response(EMBEDDINGS, orjson.dumps(EMBED_RESPONSE), c)
    assert out["object"] == "list" and out["model"] == "cohere/command-a-03-2025"
    assert out["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    vectors = EMBED_RESPONSE["embeddings"]["float"]
    for i, item in enumerate(out["data"]):
        assert item["object"] == "embedding" and item["index"] == i
        if fmt == "float":
            assert item["embedding"] == vectors[i]
        else:
            # OpenAI's base64 is little-endian float32, so this is how its SDK decodes it.
            raw = base64.b64decode(item["embedding"])
            assert raw == struct.pack("<3f", *vectors[i])
            assert struct.unpack("<3f", raw) == pytest.approx(vectors[i], rel=1e-6)


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "payload", "message", "type_"),
    [
        (
            400,
            b'{"id":"c6b3a7b4","message":"invalid request: message must be at least 1 token long"}',
            "invalid request: message must be at least 1 token long",
            "invalid_request_error",
        ),
        (498, b'{"message":"invalid api token"}', "invalid api token", "authentication_error"),
        (
            429,
            b'{"message":"You are using a Trial key, which is limited to 10 API calls / minute."}',
            "You are using a Trial key, which is limited to 10 API calls / minute.",
            "rate_limit_exceeded",
        ),
        (500, b"upstream connect error", "upstream connect error", None),
    ],
)
def test_errors_keep_status_and_message(status, payload, message, type_):
    err = adapter().parse_error(status, payload)
    assert err.status == status
    assert err.message == f"cohere: {message}"
    if type_:
        assert err.type == type_


def test_credential_only_in_header():
    req = adapter().build_request(CHAT, chat([{"role": "user", "content": "x"}]), Target("m"), ctx())
    assert KEY not in req.url and KEY.encode() not in req.body
