"""Azure OpenAI, Fireworks and Cohere through the running gateway, driven by the official OpenAI SDK.

Azure and Fireworks answer from a small recording upstream that replays each provider's
documented shapes; Cohere answers from ``MockUpstream("cohere")``. Each test checks what the
upstream received (URL, headers, body) and what the client got back.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable, Iterator
from typing import Any

import openai
import orjson
import pytest

from gateway.wire.asgi import answer_lifespan, read_body
from simulators.model import embed
from simulators.server import MAX_SIMULATED_BODY, MockUpstream
from tests.e2e.conftest import CLIENT_KEY, UPSTREAM_KEY, base_config
from tests.support.servers import ServerThread

Factory = Callable[[dict[str, Any]], ServerThread]


class Recorder:
    """An ASGI upstream that records every request and answers with ``reply`` (status, content type, body)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reply: tuple[int, str, bytes] = (200, "application/json", b"{}")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await answer_lifespan(receive, send)
        raw = await read_body(receive, MAX_SIMULATED_BODY, None)
        self.requests.append(
            {
                "path": scope["path"],
                "query": scope["query_string"].decode(),
                "headers": {k.decode(): v.decode("latin-1") for k, v in scope["headers"]},
                "body": orjson.loads(raw) if raw else None,
            }
        )
        status, ctype, body = self.reply
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype.encode())]})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def recorder() -> Iterator[tuple[ServerThread, Recorder]]:
    app = Recorder()
    with ServerThread(app, lifespan="off") as srv:
        yield srv, app


@pytest.fixture(scope="module")
def cohere_upstream() -> Iterator[tuple[ServerThread, MockUpstream]]:
    app = MockUpstream("cohere")
    with ServerThread(app) as srv:
        yield srv, app


def client(gw: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0)


def assert_credentials(headers: dict[str, str]) -> None:
    assert all(CLIENT_KEY not in v for v in headers.values())


def sse(chunks: list[dict[str, Any]], done: bool = True) -> tuple[int, str, bytes]:
    body = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + (b"data: [DONE]\n\n" if done else b"")
    return 200, "text/event-stream", body


# -- Azure OpenAI -----------------------------------------------------------------------------


@pytest.fixture
def azure_gw(recorder: tuple[ServerThread, Recorder], gateway_factory: Factory) -> tuple[ServerThread, Recorder]:
    srv, rec = recorder
    rec.requests.clear()
    cfg = base_config()
    common = {"kind": "azure", "api_key": UPSTREAM_KEY, "timeout": 5, "retries": 0}
    cfg["providers"]["azure"] = {**common, "base_url": srv.url + "/openai", "api_version": "2024-10-21"}
    cfg["providers"]["azurev1"] = {**common, "base_url": srv.url + "/openai/v1/"}
    return gateway_factory(cfg), rec


AZURE_RESPONSE = {
    "id": "chatcmpl-8IMI4HzcmcK6I77vpOJCPt0Vcf8zJ",
    "object": "chat.completion",
    "created": 1699386280,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Example model response"},
            "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}},
        }
    ],
    "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    "prompt_filter_results": [
        {"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}}}
    ],
}


def test_azure_classic_chat(azure_gw):
    gw, rec = azure_gw
    rec.reply = (200, "application/json", orjson.dumps(AZURE_RESPONSE))
    r = client(gw).chat.completions.create(model="azure/gpt-4o-prod", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "Example model response"
    assert r.model == "azure/gpt-4o-prod" and r.usage.total_tokens == 14
    assert r.prompt_filter_results[0]["prompt_index"] == 0  # Azure's documented field is kept
    req = rec.requests[-1]
    assert req["path"] == "/openai/deployments/gpt-4o-prod/chat/completions"
    assert req["query"] == "api-version=2024-10-21"
    assert req["headers"]["api-key"] == UPSTREAM_KEY and "authorization" not in req["headers"]
    assert_credentials(req["headers"])
    assert req["body"]["messages"] == [{"role": "user", "content": "hi"}]


def test_azure_v1_form(azure_gw):
    gw, rec = azure_gw
    rec.reply = (200, "application/json", orjson.dumps(AZURE_RESPONSE))
    client(gw).chat.completions.create(model="azurev1/gpt-4o-prod", messages=[{"role": "user", "content": "hi"}])
    req = rec.requests[-1]
    assert req["path"] == "/openai/v1/chat/completions" and req["query"] == ""
    assert req["body"]["model"] == "gpt-4o-prod" and req["headers"]["api-key"] == UPSTREAM_KEY


def test_azure_stream_with_annotation_chunks(azure_gw):
    gw, rec = azure_gw
    base = {"id": "chatcmpl-8JCb", "object": "chat.completion.chunk", "created": 1699587397, "model": "gpt-35-turbo"}
    empty = {"id": "", "object": "", "created": 0, "model": ""}
    safe = {"hate": {"filtered": False, "severity": "safe"}}
    rec.reply = sse(
        [
            {
                **empty,
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": safe}],
                "choices": [],
                "usage": None,
            },
            {**base, "choices": [{"index": 0, "finish_reason": None, "delta": {"role": "assistant"}}], "usage": None},
            {**base, "choices": [{"index": 0, "finish_reason": None, "delta": {"content": "Hey"}}], "usage": None},
            {**empty, "choices": [{"index": 0, "finish_reason": None, "content_filter_results": safe}], "usage": None},
            {**base, "choices": [{"index": 0, "finish_reason": None, "delta": {"content": " Jude"}}], "usage": None},
            {
                **empty,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "content_filter",
                        "content_filter_results": {"protected_material_text": {"detected": True, "filtered": True}},
                    }
                ],
                "usage": None,
            },
            {**base, "choices": [], "usage": {"prompt_tokens": 14, "completion_tokens": 2, "total_tokens": 16}},
        ]
    )
    chunks = list(
        client(gw).chat.completions.create(
            model="azure/gpt-35-turbo",
            messages=[{"role": "user", "content": "Tell me the lyrics to Hey Jude."}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    # The SDK indexes choices[0] on every chunk with choices: nothing here may lack a delta.
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "Hey Jude"
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices]
    assert finishes[-1] == "content_filter"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 16
    assert {ch.id for ch in chunks} == {"chatcmpl-8JCb"}


def test_azure_content_filter_error(azure_gw):
    gw, rec = azure_gw
    err = {
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {"hate": {"filtered": True, "severity": "high"}},
            },
        }
    }
    rec.reply = (400, "application/json", orjson.dumps(err))
    with pytest.raises(openai.BadRequestError) as e:
        client(gw).chat.completions.create(model="azure/gpt-4o-prod", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "content_filter"
    assert "content management policy" in e.value.message


def test_azure_deployment_cannot_escape_its_path(azure_gw):
    gw, rec = azure_gw
    with pytest.raises(openai.BadRequestError) as e:
        client(gw).chat.completions.create(model="azure/../../admin", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "invalid_deployment"
    assert rec.requests == []


# -- Fireworks --------------------------------------------------------------------------------


@pytest.fixture
def fireworks_gw(recorder: tuple[ServerThread, Recorder], gateway_factory: Factory) -> tuple[ServerThread, Recorder]:
    srv, rec = recorder
    rec.requests.clear()
    cfg = base_config()
    cfg["providers"]["fireworks"] = {
        "kind": "fireworks",
        "base_url": srv.url + "/inference/v1",
        "api_key": UPSTREAM_KEY,
        "timeout": 5,
        "retries": 0,
    }
    cfg["models"].append({"name": "fireworks/llama-v3p1-8b-instruct", "context_window": 131072})
    return gateway_factory(cfg), rec


FW_BASE = {
    "id": "fw-1",
    "object": "chat.completion.chunk",
    "created": 1730000000,
    "model": "accounts/fireworks/models/llama-v3p1-8b-instruct",
}
FW_USAGE = {"prompt_tokens": 12, "total_tokens": 15, "completion_tokens": 3}
FW_STREAM = [
    {**FW_BASE, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}], "usage": None},
    {**FW_BASE, "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}], "usage": None},
    {**FW_BASE, "choices": [{"index": 0, "delta": {"content": " there!"}, "finish_reason": "stop"}], "usage": FW_USAGE},
]


@pytest.mark.parametrize("include", [False, True])
def test_fireworks_stream_last_chunk_usage(fireworks_gw, include):
    gw, rec = fireworks_gw
    rec.reply = sse(FW_STREAM)
    kwargs: dict[str, Any] = {"stream_options": {"include_usage": True}} if include else {}
    chunks = list(
        client(gw).chat.completions.create(
            model="fireworks/llama-v3p1-8b-instruct",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_body={"top_k": 40, "context_length_exceeded_behavior": "error"},
            **kwargs,
        )
    )
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "Hello there!"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert (chunks[-1].usage.total_tokens == 15) if include else all(ch.usage is None for ch in chunks)
    req = rec.requests[-1]
    assert req["path"] == "/inference/v1/chat/completions"
    assert req["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert_credentials(req["headers"])
    body = req["body"]
    assert body["model"] == "accounts/fireworks/models/llama-v3p1-8b-instruct"
    assert body["top_k"] == 40 and body["context_length_exceeded_behavior"] == "error"
    assert body["stream_options"] == {"include_usage": True}


def test_fireworks_completions_extras(fireworks_gw):
    gw, rec = fireworks_gw
    reply = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1730000000,
        "model": "accounts/fireworks/models/llama-v3p1-8b-instruct",
        "choices": [{"index": 0, "text": '{"a": "b"}', "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    }
    rec.reply = (200, "application/json", orjson.dumps(reply))
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    r = client(gw).completions.create(
        model="fireworks/accounts/acme/models/my-ft",
        prompt="<image> as JSON:",
        max_tokens=20,
        extra_body={
            "images": ["data:image/jpeg;base64,/9j/4AAQ"],
            "response_format": {"type": "json_object", "schema": schema},
        },
    )
    assert r.choices[0].text == '{"a": "b"}' and r.model == "fireworks/accounts/acme/models/my-ft"
    body = rec.requests[-1]["body"]
    assert rec.requests[-1]["path"] == "/inference/v1/completions"
    assert body["model"] == "accounts/acme/models/my-ft"
    assert body["images"] == ["data:image/jpeg;base64,/9j/4AAQ"]
    assert body["response_format"] == {"type": "json_object", "schema": schema}


# -- Cohere -----------------------------------------------------------------------------------


@pytest.fixture
def cohere_gw(
    cohere_upstream: tuple[ServerThread, MockUpstream], gateway_factory: Factory
) -> tuple[ServerThread, MockUpstream]:
    srv, up = cohere_upstream
    up.requests.clear()
    cfg = base_config()
    cfg["providers"]["cohere"] = {
        "kind": "cohere",
        "base_url": srv.url,
        "api_key": UPSTREAM_KEY,
        "timeout": 5,
        "retries": 0,
    }
    return gateway_factory(cfg), up


def test_cohere_chat(cohere_gw):
    gw, up = cohere_gw
    r = client(gw).chat.completions.create(
        model="cohere/command-a-03-2025",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "one two three"}],
        temperature=0.3,
        top_p=1.0,
    )
    assert r.choices[0].message.content == "one two three"
    assert r.choices[0].finish_reason == "stop"
    # usage.tokens: 5 words of prompt plus the mock's 7-token preamble.
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (12, 3)
    req = up.requests[-1]
    assert req["path"] == "/v2/chat"
    assert req["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert_credentials(req["headers"])
    assert req["body"] == {
        "model": "command-a-03-2025",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "one two three"}],
        "temperature": 0.3,
        "p": 0.99,
    }


def test_cohere_stream_with_usage(cohere_gw):
    gw, up = cohere_gw
    chunks = list(
        client(gw).chat.completions.create(
            model="cohere/command-a-03-2025",
            messages=[{"role": "user", "content": "a b c d"}],
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "a b c"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert up.requests[-1]["body"]["stream"] is True and up.requests[-1]["body"]["max_tokens"] == 3


def test_cohere_stop_sequence(cohere_gw):
    gw, _ = cohere_gw
    r = client(gw).chat.completions.create(
        model="cohere/command-a-03-2025", messages=[{"role": "user", "content": "one two STOP three"}], stop=["STOP"]
    )
    assert r.choices[0].message.content.strip() == "one two" and r.choices[0].finish_reason == "stop"


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "gets the weather of a given location",
            "parameters": {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]},
        },
    }
]


def test_cohere_tool_round_trip(cohere_gw):
    gw, up = cohere_gw
    c = client(gw)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Toronto"}]
    r = c.chat.completions.create(model="cohere/command-a-03-2025", messages=messages, tools=TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and orjson.loads(call.function.arguments) == {"input": "Toronto"}
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "20 degrees"})
    final = c.chat.completions.create(model="cohere/command-a-03-2025", messages=messages, tools=TOOLS)
    assert final.choices[0].message.content == "20 degrees" and final.choices[0].finish_reason == "stop"
    sent = up.requests[-1]["body"]["messages"]
    assert sent[1]["role"] == "assistant" and sent[1]["tool_calls"][0]["id"] == call.id
    assert sent[1]["tool_plan"] == "I will call get_weather."
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "20 degrees"}


def test_cohere_streamed_tool_call(cohere_gw):
    gw, _ = cohere_gw
    chunks = list(
        client(gw).chat.completions.create(
            model="cohere/command-a-03-2025", messages=[{"role": "user", "content": "Madrid"}], tools=TOOLS, stream=True
        )
    )
    args = "".join(tc.function.arguments or "" for ch in chunks for tc in ch.choices[0].delta.tool_calls or ())
    assert orjson.loads(args) == {"input": "Madrid"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("fmt", [None, "float"])
def test_cohere_embeddings(cohere_gw, fmt):
    gw, up = cohere_gw
    kwargs: dict[str, Any] = {"encoding_format": fmt} if fmt else {}  # the SDK asks for base64 by default
    r = client(gw).embeddings.create(model="cohere/embed-v4.0", input=["hello", "goodbye"], dimensions=8, **kwargs)
    assert [d.index for d in r.data] == [0, 1]
    for d, text in zip(r.data, ["hello", "goodbye"], strict=True):
        expected = struct.unpack("<8f", struct.pack("<8f", *embed(text, 8)))  # float32, as Cohere sends
        assert d.embedding == pytest.approx(expected, rel=1e-6)
    assert r.usage.prompt_tokens == 2
    body = up.requests[-1]["body"]
    assert body == {
        "model": "embed-v4.0",
        "texts": ["hello", "goodbye"],
        "input_type": "search_document",
        "embedding_types": ["float"],
        "output_dimension": 8,
    }


def test_cohere_embeddings_base64_and_input_type(cohere_gw):
    gw, up = cohere_gw
    r = client(gw).embeddings.create(
        model="cohere/embed-v4.0",
        input="hello",
        dimensions=4,
        encoding_format="base64",
        extra_body={"input_type": "search_query"},
    )
    raw = base64.b64decode(r.data[0].embedding)
    assert struct.unpack("<4f", raw) == pytest.approx(embed("hello", 4), rel=1e-6)
    assert up.requests[-1]["body"]["input_type"] == "search_query"


def test_cohere_legacy_completions(cohere_gw):
    gw, up = cohere_gw
    r = client(gw).completions.create(model="cohere/command-a-03-2025", prompt="alpha beta gamma", max_tokens=2)
    assert r.choices[0].text == "alpha beta" and r.choices[0].finish_reason == "length"
    assert r.object == "text_completion"
    assert up.requests[-1]["body"]["messages"] == [{"role": "user", "content": "alpha beta gamma"}]


def test_cohere_unsupported_parameter_never_reaches_upstream(cohere_gw):
    gw, up = cohere_gw
    with pytest.raises(openai.BadRequestError) as e:
        client(gw).chat.completions.create(
            model="cohere/command-a-03-2025", messages=[{"role": "user", "content": "x"}], n=2
        )
    assert e.value.param == "n" and e.value.code == "unsupported_parameter"
    assert not up.requests


def test_cohere_upstream_error_keeps_status_and_message(cohere_gw):
    gw, _ = cohere_gw
    with pytest.raises(openai.BadRequestError) as e:
        client(gw).chat.completions.create(
            model="cohere/command-a-03-2025", messages=[{"role": "tool", "tool_call_id": "", "content": "orphan"}]
        )
    assert e.value.status_code == 400
    assert e.value.body["message"] == "cohere: invalid request: messages[0].tool_call_id is required"
