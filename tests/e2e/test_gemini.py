"""The official OpenAI SDK -> the gateway under uvicorn -> MockUpstream("gemini") under uvicorn.

Each test also checks what the simulated Google API received: the key in ``x-goog-api-key`` and
never in the URL, the client's own key never forwarded, and the model without its ``gemini/``.
``upstream``, ``gateway`` and ``client`` are tests/e2e/conftest.py's, for the gemini dialect.
"""

from __future__ import annotations

import array
import base64
from typing import Any

import openai
import pytest

from simulators.server import MockUpstream
from tests.e2e.conftest import CLIENT_KEY, UPSTREAM_KEY, base_config, provider_for, sdk
from tests.support.servers import ServerThread


@pytest.fixture(scope="module")
def dialect() -> str:
    return "gemini"


@pytest.fixture
def gateway_config(gateway_config: dict[str, Any]) -> dict[str, Any]:
    gateway_config["models"].append({"name": "gemini/flash", "upstream": "gemini-2.0-flash"})
    return gateway_config


def received(app: MockUpstream) -> list[dict[str, Any]]:
    """What the upstream got, after checking every request carried only the upstream key, in a header."""
    reqs = list(app.requests)
    for r in reqs:
        assert r["headers"].get("x-goog-api-key") == UPSTREAM_KEY
        assert "key=" not in r["query"] and UPSTREAM_KEY not in r["path"] + r["query"]
        assert CLIENT_KEY not in str(r["headers"]) and "authorization" not in r["headers"]
    return reqs


def test_chat(client, upstream):
    app = upstream.app
    r = client.chat.completions.create(
        model="gemini/gemini-2.0-flash",
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "red green blue"}],
        max_tokens=50,
        temperature=0.2,
    )
    assert r.model == "gemini/gemini-2.0-flash" and r.object == "chat.completion"
    assert r.choices[0].message.content == "red green blue" and r.choices[0].finish_reason == "stop"
    # The simulator counts words: 2 system + 3 user prompt tokens, 3 completion tokens.
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (5, 3, 8)
    (req,) = received(app)
    assert req["path"] == "/v1beta/models/gemini-2.0-flash:generateContent" and req["query"] == ""
    assert req["body"] == {
        "contents": [{"role": "user", "parts": [{"text": "red green blue"}]}],
        "systemInstruction": {"parts": [{"text": "Be terse."}]},
        "generationConfig": {"maxOutputTokens": 50, "temperature": 0.2},
    }


def test_logprobs(client, upstream):
    app = upstream.app
    r = client.chat.completions.create(
        model="gemini/gemini-2.0-flash", messages=[{"role": "user", "content": "to be"}], logprobs=True, top_logprobs=2
    )
    content = r.choices[0].logprobs.content
    assert "".join(t.token for t in content) == "to be" and all(len(t.top_logprobs) == 2 for t in content)
    assert received(app)[0]["body"]["generationConfig"] == {"responseLogprobs": True, "logprobs": 2}


def test_configured_alias_uses_its_upstream_name(client, upstream):
    app = upstream.app
    r = client.chat.completions.create(model="gemini/flash", messages=[{"role": "user", "content": "hi"}])
    assert r.model == "gemini/flash" and r.choices[0].message.content == "hi"
    assert received(app)[0]["path"] == "/v1beta/models/gemini-2.0-flash:generateContent"


def test_stream_with_include_usage(client, upstream):
    app = upstream.app
    chunks = list(
        client.chat.completions.create(
            model="gemini/gemini-2.0-flash",
            messages=[{"role": "user", "content": "one two three four"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three four"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4 and chunks[-1].usage.prompt_tokens == 4
    assert all(c.model == "gemini/gemini-2.0-flash" for c in chunks)
    (req,) = received(app)
    assert req["path"] == "/v1beta/models/gemini-2.0-flash:streamGenerateContent" and req["query"] == "alt=sse"


def test_stream_without_include_usage_has_no_usage_chunk(client):
    chunks = list(
        client.chat.completions.create(
            model="gemini/gemini-2.0-flash", messages=[{"role": "user", "content": "a b"}], stream=True
        )
    )
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "a b"


def test_n_candidates(client, upstream):
    app = upstream.app
    r = client.chat.completions.create(
        model="gemini/gemini-2.0-flash", messages=[{"role": "user", "content": "x y z"}], n=2, max_tokens=2
    )
    # Two words of "x y z" each (the simulator cuts at max_tokens words).
    assert [(c.index, c.message.content.split(), c.finish_reason) for c in r.choices] == [
        (0, ["x", "y"], "length"),
        (1, ["x", "y"], "length"),
    ]
    chunks = list(
        client.chat.completions.create(
            model="gemini/gemini-2.0-flash", messages=[{"role": "user", "content": "p q"}], n=2, stream=True
        )
    )
    for i in (0, 1):
        mine = [c.choices[0] for c in chunks if c.choices and c.choices[0].index == i]
        assert "".join(ch.delta.content or "" for ch in mine) == "p q" and mine[-1].finish_reason == "stop"
    assert [r["body"]["generationConfig"]["candidateCount"] for r in received(app)] == [2, 2]


def test_legacy_completions(client, upstream):
    app = upstream.app
    r = client.completions.create(model="gemini/gemini-2.0-flash", prompt="Say this is a test", max_tokens=3)
    assert r.object == "text_completion" and r.choices[0].finish_reason == "length"
    assert r.choices[0].text.split() == ["Say", "this", "is"]
    chunks = list(client.completions.create(model="gemini/gemini-2.0-flash", prompt="alpha beta", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "alpha beta"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="gemini/gemini-2.0-flash", prompt=["a", "b"])
    assert e.value.body["param"] == "prompt"
    assert len(received(app)) == 2


def test_embeddings_float_and_sdk_default_base64(client, upstream):
    app = upstream.app
    texts = ["the cat", "a dog"]
    floats = client.embeddings.create(model="gemini/text-embedding-004", input=texts, encoding_format="float")
    assert len(floats.data) == 2 and len(floats.data[0].embedding) == 768
    # The SDK asks for base64 by default and decodes it itself: the same vectors, as float32.
    default = client.embeddings.create(model="gemini/text-embedding-004", input=texts, dimensions=16)
    assert [len(d.embedding) for d in default.data] == [16, 16]
    again = client.embeddings.create(
        model="gemini/text-embedding-004", input=texts, dimensions=16, encoding_format="float"
    )
    for d, f in zip(default.data, again.data, strict=True):
        assert d.embedding == pytest.approx(f.embedding, rel=1e-6)
    raw = client.embeddings.create(model="gemini/text-embedding-004", input="the cat", encoding_format="base64")
    decoded = array.array("f", base64.b64decode(raw.data[0].embedding)).tolist()
    assert decoded == pytest.approx(floats.data[0].embedding, rel=1e-6)
    assert raw.usage.prompt_tokens == 2  # 7 characters, about 4 a token
    paths = [r["path"] for r in received(app)]
    assert paths == [
        "/v1beta/models/text-embedding-004:batchEmbedContents",
        "/v1beta/models/text-embedding-004:batchEmbedContents",
        "/v1beta/models/text-embedding-004:batchEmbedContents",
        "/v1beta/models/text-embedding-004:embedContent",
    ]
    assert app.requests[1]["body"]["requests"][0]["outputDimensionality"] == 16
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="gemini/text-embedding-004", input=[[1, 2, 3]])
    assert e.value.body["param"] == "input"


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def test_tools_round_trip_with_thought_signature(client, upstream):
    app = upstream.app
    messages: list[Any] = [{"role": "user", "content": "Paris"}]
    first = client.chat.completions.create(
        model="gemini/gemini-2.0-flash", messages=messages, tools=TOOLS, tool_choice="required"
    )
    msg = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and msg.content is None
    (call,) = msg.tool_calls
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    assert call.function.arguments == '{"city":"Paris"}'
    # Replaying the SDK's own message object sends the thought signature back (Gemini 3 requires it).
    messages += [msg, {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'}]
    second = client.chat.completions.create(model="gemini/gemini-2.0-flash", messages=messages, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop" and "21" in second.choices[0].message.content
    reqs = received(app)
    decl = reqs[0]["body"]["tools"][0]["functionDeclarations"][0]
    assert decl["name"] == "get_weather" and decl["parametersJsonSchema"] == TOOLS[0]["function"]["parameters"]
    assert reqs[0]["body"]["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    model_turn, tool_turn = reqs[1]["body"]["contents"][1:]
    assert model_turn["parts"][0]["thoughtSignature"].startswith("mock-signature-")
    assert tool_turn == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}}],
    }


def test_tool_call_stream_and_a_dropped_signature(client):
    chunks = list(
        client.chat.completions.create(
            model="gemini/gemini-2.0-flash", messages=[{"role": "user", "content": "Rome"}], tools=TOOLS, stream=True
        )
    )
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [(tc.index, tc.function.name, tc.function.arguments) for tc in calls] == [
        (0, "get_weather", '{"city":"Rome"}')
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # A call without its signature whose id the gateway never handed out (so it keeps no signature
    # for it; tests/e2e/test_gemini_signatures.py has the calls it did) goes without, and Gemini 3's
    # 400 is relayed as such.
    unknown = "call_never_handed_out"
    stripped = {"id": unknown, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="gemini/gemini-2.0-flash",
            messages=[
                {"role": "user", "content": "Rome"},
                {"role": "assistant", "tool_calls": [stripped]},
                {"role": "tool", "tool_call_id": unknown, "content": "sunny"},
            ],
            tools=TOOLS,
        )
    assert "thought_signature" in e.value.message and e.value.body["code"] == "INVALID_ARGUMENT"


def test_blocked_prompt_is_a_400_even_when_streamed(client):
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as e:
            r = client.chat.completions.create(
                model="gemini/gemini-2.0-flash", messages=[{"role": "user", "content": "[[block]] me"}], stream=stream
            )
            list(r) if stream else None
        assert e.value.body["code"] == "content_filter"


def test_mid_stream_error_reaches_the_client(gateway_for):
    # A pause before each frame, so the gateway has relayed the first one before the error frame comes.
    with ServerThread(MockUpstream("gemini", chunk_delay_ms=50)) as srv:
        cfg = base_config()
        cfg["providers"]["gemini"] = provider_for("gemini", srv.url)
        client = sdk(gateway_for(cfg))
        stream = client.chat.completions.create(
            model="gemini/gemini-2.0-flash", messages=[{"role": "user", "content": "[[stream-error]] a b"}], stream=True
        )
        got = []
        with pytest.raises(openai.APIError) as e:
            for c in stream:
                got.append(c)
    assert got and "internal error" in str(e.value.message)


def test_unsafe_model_name_never_reaches_the_upstream(client, upstream):
    app = upstream.app
    for model in ("gemini/../files", "gemini/a/b", "gemini/x:streamGenerateContent"):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        assert e.value.body["param"] == "model"
    assert not app.requests


def test_unsupported_parameter_is_named(client, upstream):
    app = upstream.app
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="gemini/gemini-2.0-flash", messages=[{"role": "user", "content": "hi"}], logit_bias={"1": 5}
        )
    assert e.value.body["param"] == "logit_bias" and e.value.body["code"] == "unsupported_parameter"
    assert not app.requests
