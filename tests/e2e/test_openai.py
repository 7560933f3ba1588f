"""The OpenAI SDK (sync, async, streaming) through the gateway to a recording OpenAI-compatible upstream."""

from __future__ import annotations

import asyncio
import base64
import struct

import httpx
import openai
import pytest

from tests.e2e.conftest import ADMIN_KEY, CLIENT_KEY, OTHER_KEY, UPSTREAM_KEY, sdk


def upstream_requests(upstream):
    return list(upstream[1].requests)


def test_chat_reaches_upstream_with_its_own_credential(gateway, upstream):
    r = sdk(gateway).chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "hello upstream"}],
        seed=3,
        extra_body={"custom_field": 1},
        extra_headers={"x-request-id": "req-abc"},
    )
    assert r.model == "openai/gpt-4o-mini" and r.choices[0].message.content == "hello upstream"
    assert r.usage.prompt_tokens == 2 and r.usage.completion_tokens == 2
    (seen,) = upstream_requests(upstream)
    assert seen["path"] == "/v1/chat/completions"
    assert seen["body"]["model"] == "gpt-4o-mini" and seen["body"]["seed"] == 3 and seen["body"]["custom_field"] == 1
    assert seen["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert seen["headers"]["x-request-id"] == "req-abc"
    assert seen["headers"]["user-agent"] == "switchyard"  # the gateway's own, never the SDK's
    assert CLIENT_KEY not in str(seen)


def test_response_headers_carry_request_id(gateway):
    raw = sdk(gateway).chat.completions.with_raw_response.create(
        model="mock/echo", messages=[{"role": "user", "content": "x"}]
    )
    assert raw.headers["x-request-id"].startswith("req_")


def test_stream_asks_upstream_for_usage_and_hides_it(gateway, upstream):
    chunks = list(
        sdk(gateway).chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "one two three"}], stream=True
        )
    )
    (seen,) = upstream_requests(upstream)
    assert seen["body"]["stream_options"] == {"include_usage": True}
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "one two three"
    assert chunks[-1].choices[0].finish_reason == "stop" and all(c.model == "openai/gpt-4o-mini" for c in chunks)


def test_stream_with_usage_for_client_that_asked(gateway):
    chunks = list(
        sdk(gateway).chat.completions.create(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3


def test_raw_sse_framing(gateway):
    body = {"model": "mock/echo", "messages": [{"role": "user", "content": "a b"}], "stream": True}
    with httpx.stream(
        "POST", gateway.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {CLIENT_KEY}"}
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    events = text.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    assert all(e.startswith("data: ") and "\n" not in e for e in events[:-1])


def test_async_client(gateway):
    async def go():
        c = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        rs = await asyncio.gather(
            *[
                c.chat.completions.create(model="mock/echo", messages=[{"role": "user", "content": f"n{i}"}])
                for i in range(20)
            ]
        )
        stream = await c.chat.completions.create(
            model="mock/echo", messages=[{"role": "user", "content": "s t"}], stream=True
        )
        text = "".join([ch.choices[0].delta.content or "" async for ch in stream])
        await c.close()
        return rs, text

    rs, text = asyncio.run(go())
    assert [r.choices[0].message.content for r in rs] == [f"n{i}" for i in range(20)] and text == "s t"


def test_completions_all_prompt_forms(gateway, upstream):
    c = sdk(gateway)
    assert c.completions.create(model="openai/gpt-4o-mini", prompt="say this").choices[0].text == "say this"
    r = c.completions.create(model="openai/gpt-4o-mini", prompt=["a", "b"], n=2, max_tokens=5)
    assert [ch.index for ch in r.choices] == [0, 1, 2, 3]
    assert c.completions.create(model="mock/echo", prompt=[1, 2, 3]).choices[0].text == "t1 t2 t3"
    assert len(c.completions.create(model="mock/echo", prompt=[[1], [2]]).choices) == 2
    r = c.completions.create(model="mock/echo", prompt="x y z", echo=True, logprobs=2, max_tokens=2, stop=["z"])
    assert r.choices[0].text == "x y zx y" and r.choices[0].finish_reason == "length"
    assert len(r.choices[0].logprobs.tokens) == 2
    assert upstream_requests(upstream)[0]["path"] == "/v1/completions"


def test_v4_beta_completions_with_x_api_key(gateway):
    r = httpx.post(
        gateway.url + "/v4/beta/completions",
        json={"model": "openai/gpt-4o", "prompt": "hi there", "max_tokens": 1},
        headers={"x-api-key": CLIENT_KEY},
    )
    assert r.status_code == 200
    body = r.json()
    assert (
        body["object"] == "text_completion" and body["model"] == "openai/gpt-4o" and body["choices"][0]["text"] == "hi"
    )


def test_completion_stream(gateway):
    chunks = list(
        sdk(gateway).completions.create(
            model="mock/echo", prompt="p q r", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == "p q r"
    assert chunks[-1].usage.total_tokens == 6


def test_embeddings_base64_default_and_float(gateway, upstream):
    c = sdk(gateway)
    r = c.embeddings.create(model="openai/text-embedding-3-small", input=["x", "y"], dimensions=8)
    assert len(r.data) == 2 and len(r.data[0].embedding) == 8
    assert upstream_requests(upstream)[0]["body"]["encoding_format"] == "base64"
    f = c.embeddings.create(model="mock/embed", input="x", dimensions=8, encoding_format="float")
    assert f.data[0].embedding == pytest.approx(r.data[0].embedding, rel=1e-6)
    raw = c.embeddings.with_raw_response.create(model="mock/embed", input="x", dimensions=4, encoding_format="base64")
    vec = struct.unpack("<4f", base64.b64decode(raw.http_response.json()["data"][0]["embedding"]))
    assert sum(v * v for v in vec) == pytest.approx(1.0, rel=1e-5)


def test_alias_serves_first_deployment(gateway, upstream):
    r = sdk(gateway).chat.completions.create(model="smart", messages=[{"role": "user", "content": "x"}])
    assert r.model == "smart"
    assert upstream_requests(upstream)[0]["body"]["model"] == "gpt-4o"


def test_models_list_per_key(gateway):
    ids = {m.id for m in sdk(gateway).models.list()}
    assert {"mock/echo", "openai/gpt-4o-mini", "smart", "openai/*", "mock/*"} <= ids
    ids_b = {m.id for m in sdk(gateway, OTHER_KEY).models.list()}
    assert ids_b == {"mock/echo", "mock/*"}
    assert sdk(gateway).models.retrieve("mock/echo").id == "mock/echo"
    with pytest.raises(openai.NotFoundError):
        sdk(gateway, OTHER_KEY).models.retrieve("openai/gpt-4o-mini")


def test_usage_route(gateway):
    c = sdk(gateway)
    c.chat.completions.create(model="mock/echo", messages=[{"role": "user", "content": "a b c"}])
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="mock/echo", messages=[])
    h = {"authorization": f"Bearer {CLIENT_KEY}"}
    u = httpx.get(gateway.url + "/v1/usage", headers=h).json()
    assert u["object"] == "usage" and u["key"] == "team-a" and u["requests"] >= 2 and u["errors"] >= 1
    assert u["models"]["mock/echo"]["prompt_tokens"] >= 3
    assert httpx.get(gateway.url + "/v1/usage?key=ops", headers=h).status_code == 403
    r = httpx.get(gateway.url + "/v1/usage?key=team-a", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    # Every request with a valid key is recorded, usage reads included: the read above and the 403.
    assert r.status_code == 200 and r.json()["requests"] == u["requests"] + 2
    assert httpx.get(gateway.url + "/v1/usage?date=2020-13-45", headers=h).status_code == 400


def test_health(gateway):
    assert httpx.get(gateway.url + "/healthz").status_code == 200
    assert httpx.get(gateway.url + "/readyz").status_code == 200
