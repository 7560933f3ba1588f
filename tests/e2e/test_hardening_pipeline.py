"""Issue 19, the request pipeline: deadlines across attempts, circuit breakers that only count the
upstream's own failures, upstream errors relayed without secrets and in OpenAI's shape, 400s
where 500s were (huge integers, deep JSON, Retry-After: nan), content types, model names, dates
and files lists."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from gateway.wire.upstream import MAX_RESPONSE_BYTES
from tests.e2e.conftest import ADMIN_KEY, CLIENT_KEY, UPSTREAM_KEY, base_config
from tests.support.hardening import ScriptedUpstream, Served, json_reply
from tests.support.servers import ServerThread

H = {"authorization": f"Bearer {CLIENT_KEY}"}


@pytest.fixture(scope="module")
def scripted():
    app = ScriptedUpstream()
    with ServerThread(app) as srv:
        yield srv, app


def cfg_with(url: str, **provider: Any) -> dict[str, Any]:
    cfg = base_config()
    cfg["providers"]["up"] = {
        "kind": "openai",
        "base_url": url + "/v1",
        "api_key": UPSTREAM_KEY,
        "timeout": 5,
        "retry_backoff": 0.01,
        **provider,
    }
    return cfg


def chat(gw: ServerThread, model: str, stream: bool = False, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "a b"}], "stream": stream, **extra}
    return httpx.post(gw.url + "/v1/chat/completions", json=body, headers=H, timeout=30)


# -- deadlines (#12) -----------------------------------------------------------------------------


class HangingUpstream:
    """Accepts the request, never answers (until the client goes)."""

    def __init__(self) -> None:
        self.attempts = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                await send({"type": msg["type"] + ".complete"})
                if msg["type"] == "lifespan.shutdown":
                    return
        self.attempts += 1
        while (await receive())["type"] != "http.disconnect":
            pass


@pytest.fixture(scope="module")
def hanging():
    app = HangingUpstream()
    with ServerThread(app) as srv:
        yield srv, app


def test_retries_never_stretch_the_wait_for_the_first_byte(hanging, gateway_for):
    """#12: ``timeout: 1.5`` with 2 retries answered 504 after 5.1 s; now the deadline holds
    (plus 1 s), with or without a stream, and a per-try timeout makes room for retries."""
    srv, app = hanging
    gw = gateway_for(cfg_with(srv.url, timeout=1.5, retries=2))
    for stream in (False, True):
        t = time.monotonic()
        r = chat(gw, "up/m", stream=stream)
        assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
        assert time.monotonic() - t <= 2.5
    before = app.attempts
    gw2 = gateway_for(cfg_with(srv.url, timeout=2, attempt_timeout=0.5, retries=2))
    t = time.monotonic()
    assert chat(gw2, "up/m").status_code == 504
    assert time.monotonic() - t <= 3.0 and app.attempts - before == 3  # three tries within the deadline


def _trickle(stream: bool):
    def reply(body: Any, path: str) -> Any:
        async def gen() -> AsyncIterator[bytes]:
            if stream:
                chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
                first = {**chunk, "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}
                yield b"data: " + orjson.dumps(first) + b"\n\n"
            while True:  # one byte every 0.1 s, forever: never a gap long enough for ``timeout``
                await asyncio.sleep(0.1)
                yield b" "

        ctype = b"text/event-stream" if stream else b"application/json"
        return 200, [(b"content-type", ctype)], gen()

    return reply


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_trickling_bytes_is_cut_at_max_duration(scripted, gateway_for, stream):
    """#12: an upstream sending a byte now and then held a request forever; ``max_duration`` ends it."""
    srv, app = scripted
    app.script["trickle"] = _trickle(stream)
    gw = gateway_for(cfg_with(srv.url, timeout=2, max_duration=1.5, retries=0))
    t = time.monotonic()
    r = chat(gw, "up/trickle", stream=stream)
    assert time.monotonic() - t < 4
    if stream:
        assert r.status_code == 200 and "upstream_timeout" in r.text and "[DONE]" not in r.text
    else:
        assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"


# -- circuit breakers (#9) -----------------------------------------------------------------------


def test_429s_and_4xx_never_open_a_shared_circuit_but_5xx_do(scripted, gateway_for):
    srv, app = scripted
    app.script["limited"] = lambda b, p: json_reply(
        429, {"error": {"message": "slow down", "type": "rate_limit_exceeded"}}, (b"retry-after", b"0")
    )
    app.script["refused"] = lambda b, p: json_reply(400, {"error": {"message": "bad", "type": "invalid_request_error"}})
    app.script["broken"] = lambda b, p: json_reply(500, {"error": {"message": "boom", "type": "server_error"}})
    gw = gateway_for(cfg_with(srv.url, retries=1, circuit_breaker={"failures": 2, "cooldown": 30}))
    for _ in range(4):  # one key keeps hitting the upstream's rate limit and its own mistakes
        assert chat(gw, "up/limited").status_code == 429
        assert chat(gw, "up/refused").status_code == 400
    n = len(app.seen)
    assert chat(gw, "up/limited").status_code == 429 and len(app.seen) == n + 2  # still tried, twice
    assert chat(gw, "up/broken").status_code == 500  # two failures (a try and a retry): open
    r = chat(gw, "up/broken")
    assert r.status_code == 503 and r.json()["error"]["code"] == "upstream_unavailable"


# -- upstream errors relayed (#7, #14) -----------------------------------------------------------


def test_the_providers_key_is_redacted_from_everything_an_upstream_error_relays(scripted, gateway_for):
    srv, app = scripted
    echo = f"Incorrect API key provided: {UPSTREAM_KEY}. You can find your key at ..."
    app.script["echo"] = lambda b, p: json_reply(
        401, {"error": {"message": echo, "type": "invalid_request_error", "code": UPSTREAM_KEY, "param": None}}
    )

    def mid_stream(body: Any, path: str) -> Any:
        async def gen() -> AsyncIterator[bytes]:
            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
            first = {**chunk, "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}
            yield b"data: " + orjson.dumps(first) + b"\n\n"
            await asyncio.sleep(0.3)  # the first event is with the client by now
            yield b"data: " + orjson.dumps({"error": {"message": echo, "type": "server_error"}}) + b"\n\n"

        return 200, [(b"content-type", b"text/event-stream")], gen()

    app.script["echo-stream"] = mid_stream
    gw = gateway_for(cfg_with(srv.url, retries=0))
    r = chat(gw, "up/echo")
    assert r.status_code == 401 and UPSTREAM_KEY not in r.text and "[redacted]" in r.json()["error"]["message"]
    r = chat(gw, "up/echo-stream", stream=True)
    assert r.status_code == 200 and "Incorrect API key" in r.text and UPSTREAM_KEY not in r.text


def test_an_upstream_error_whose_type_is_an_object_is_relayed_in_openai_shape(scripted, gateway_for):
    srv, app = scripted
    weird = {"error": {"message": "odd", "type": {"nested": True}, "code": {"x": 1}, "param": ["a"]}}
    app.script["weird"] = lambda b, p: json_reply(418, weird)
    gw = gateway_for(cfg_with(srv.url, retries=0))
    err = chat(gw, "up/weird").json()["error"]
    assert err["message"] == "up: odd" and err["type"] == "invalid_request_error"
    assert all(err[f] is None or isinstance(err[f], str) for f in ("param", "code"))


def test_retry_after_nan_is_no_crash(scripted, gateway_for):
    """#10: ``Retry-After: nan`` on a 429 crashed the backoff (500)."""
    srv, app = scripted
    for value in (b"nan", b"inf", b"-3", b"Wed, 21 Oct 2015 07:28:00 GMT"):
        app.script[f"ra-{value.decode()}"] = lambda b, p, v=value: json_reply(
            429, {"error": {"message": "later", "type": "rate_limit_exceeded"}}, (b"retry-after", v)
        )
    gw = gateway_for(cfg_with(srv.url, retries=1))
    for value in ("nan", "inf", "-3", "Wed, 21 Oct 2015 07:28:00 GMT"):
        r = chat(gw, f"up/ra-{value}")
        assert r.status_code == 429, (value, r.text)
        assert r.headers.get("retry-after") in (None, "0")  # only a number is relayed


# -- request bodies (#10, #15) -------------------------------------------------------------------


def test_integers_beyond_64_bits_and_json_nested_too_deep_are_400(gateway):
    r = chat(gateway, "mock/echo", max_tokens=1e308)
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
    for depth in (300, 1023, 1100):
        raw = b'{"model": "mock/echo", "messages": [{"role": "user", "content": "a"}], "extra": ' + b"[" * depth
        raw += b"]" * depth + b"}"
        r = httpx.post(
            gateway.url + "/v1/chat/completions", content=raw, headers={**H, "content-type": "application/json"}
        )
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", (depth, r.text)


def test_json_routes_refuse_other_content_types(gateway):
    body = orjson.dumps({"model": "mock/echo", "messages": [{"role": "user", "content": "a"}]})
    url = gateway.url + "/v1/chat/completions"
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        r = httpx.post(url, content=body, headers={**H, "content-type": ctype})
        assert r.status_code == 400, ctype
        assert r.json()["error"]["code"] == "unsupported_content_type" and ctype in r.json()["error"]["message"]
    for ctype in ("application/json", "application/json; charset=utf-8", "Application/JSON", None):
        headers = {**H, **({"content-type": ctype} if ctype else {})}
        assert httpx.post(url, content=body, headers=headers).status_code == 200, ctype
    msg = orjson.dumps({"model": "mock/echo", "max_tokens": 5, "messages": [{"role": "user", "content": "a"}]})
    r = httpx.post(gateway.url + "/v1/messages", content=msg, headers={**H, "content-type": "text/plain"})
    assert r.status_code == 400 and r.json()["type"] == "error"
    r = httpx.post(
        gateway.url + "/v1/fine_tuning/jobs", content=b"{}", headers={**H, "content-type": "text/plain"}, timeout=10
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_content_type"


def test_usage_dates_must_be_yyyy_mm_dd(gateway):
    for bad in ("2026-1-2", "2026-01-2", "26-01-02", "2026-13-01", "2026-01-02x"):
        r = httpx.get(gateway.url + "/v1/usage", params={"date": bad}, headers=H)
        assert r.status_code == 400 and r.json()["error"]["param"] == "date", bad
    r = httpx.get(gateway.url + "/v1/usage", params={"date": "2026-01-02"}, headers=H)
    assert r.status_code == 200 and r.json()["date"] == "2026-01-02"


def test_a_files_list_whose_data_is_not_a_list_is_a_502(scripted, gateway_for):
    srv, app = scripted
    cfg = base_config()
    cfg["providers"]["files"] = {"kind": "openai", "base_url": srv.url + "/v1", "api_key": UPSTREAM_KEY, "files": True}
    app.script["/v1/files"] = lambda b, p: json_reply(200, {"object": "list", "data": {"id": "file-1"}})
    app.script["/v1/fine_tuning/jobs"] = lambda b, p: json_reply(200, {"object": "list", "data": "nope"})
    gw = gateway_for(cfg)
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    for path, headers in (("/v1/files", H), ("/v1/files", admin), ("/v1/fine_tuning/jobs", H)):
        r = httpx.get(gw.url + path, headers=headers, timeout=10)
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_bad_response", (path, r.text)


# -- model names (#2) ----------------------------------------------------------------------------


def test_absurd_model_names_are_400_on_every_route(gateway):
    name = "x" * (1 << 20)
    for path, body in (
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a"}]}),
        ("/v1/completions", {"prompt": "a"}),
        ("/v1/embeddings", {"input": "a"}),
        ("/v1/responses", {"input": "a"}),
        ("/v1/messages", {"max_tokens": 5, "messages": [{"role": "user", "content": "a"}]}),
        ("/v1/messages/count_tokens", {"messages": [{"role": "user", "content": "a"}]}),
        ("/v1/fine_tuning/jobs", {"training_file": "file-x"}),
    ):
        r = httpx.post(gateway.url + path, json={"model": name, **body}, headers=H, timeout=30)
        assert r.status_code == 400, (path, r.status_code)
        err = r.json()["error"]
        assert err.get("param", "model") == "model" and "maximum length 256" in err["message"]
    assert chat(gateway, "mock/" + "y" * 250).status_code == 200  # a long but sane passthrough name
    metrics = httpx.get(gateway.url + "/metrics").text
    assert "x" * 300 not in metrics


# -- compressed answers (#5) ---------------------------------------------------------------------


def _gzip_bomb(inflated: int) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    block = b"\0" * (1 << 20)
    out = [z.compress(block) for _ in range(inflated >> 20)]
    out.append(z.flush())
    return b"".join(out)


def test_a_gzip_answer_is_bounded_by_its_inflated_size(scripted, tmp_path):
    """#5: 260 KB of gzip inflated to 256 MiB past the 64 MiB bound (which trusted content-length);
    the gateway runs under a memory cap and refuses the answer at the bound."""
    srv, app = scripted
    bomb = _gzip_bomb(256 << 20)
    assert len(bomb) < 512 * 1024
    app.script["bomb"] = lambda b, p: (
        200,
        [
            (b"content-type", b"application/json"),
            (b"content-encoding", b"gzip"),
            (b"content-length", b"%d" % len(bomb)),
        ],
        bomb,
    )
    cfg = cfg_with(srv.url, retries=0)
    with Served(cfg, tmp_path) as gw:
        r = chat(gw, "up/bomb")
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_bad_response"
        assert str(MAX_RESPONSE_BYTES) in r.json()["error"]["message"]
        assert gw.alive() and gw.rss() < 400 * 1024 * 1024


def test_a_chat_answer_of_the_wrong_shape_is_a_502_for_every_client_api(scripted, gateway_for):
    """An upstream answer the translators cannot read (tool calls that are not objects) is the
    upstream's fault: 502 in the client API's shape, never a 500."""
    srv, app = scripted
    answer = {"id": "c", "object": "chat.completion", "created": 1, "model": "m"}
    message = {"role": "assistant", "content": None, "tool_calls": ["x", 3]}
    answer["choices"] = [{"index": 0, "message": message, "finish_reason": "tool_calls"}]
    app.script["odd-calls"] = lambda b, p: json_reply(200, answer)
    gw = gateway_for(cfg_with(srv.url, retries=0, responses="translate"))
    for name in ("odd-calls",):
        r = httpx.post(gw.url + "/v1/responses", json={"model": f"up/{name}", "input": "hi"}, headers=H, timeout=30)
        assert r.status_code == 502, r.text
        assert r.json()["error"]["code"] == "upstream_bad_response"
        body = {"model": f"up/{name}", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
        r = httpx.post(gw.url + "/v1/messages", json=body, headers={"x-api-key": CLIENT_KEY}, timeout=30)
        assert r.status_code == 502, r.text
        assert r.json()["type"] == "error" and r.json()["error"]["type"] == "api_error"
