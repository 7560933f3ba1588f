"""The error table of docs/errors.md, each case through the running gateway."""

from __future__ import annotations

import http.client
import socket
import time

import httpx
import openai
import pytest

from tests.e2e.conftest import CLIENT_KEY, OTHER_KEY, H, base_config, sdk
from tests.support.servers import free_port


@pytest.fixture
def gw(fault, gateway_for):
    srv, _app = fault
    cfg = base_config()
    cfg["server"]["max_body_bytes"] = 4096
    cfg["providers"]["faulty"] = {
        "kind": "openai",
        "base_url": srv.url + "/v1",
        "api_key": "sk-up",
        "timeout": 0.5,
        "retries": 0,
    }
    cfg["providers"]["claude"] = {"kind": "anthropic", "base_url": srv.url, "api_key": "sk-ant", "retries": 0}
    cfg["providers"]["patient"] = {"kind": "openai", "base_url": srv.url + "/v1", "timeout": 10, "retries": 0}
    cfg["providers"]["dead"] = {"kind": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1", "retries": 0}
    return gateway_for(cfg)


def post(gw, path: str, content: bytes | str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        gw.url + path, content=content, headers={**H, "content-type": "application/json", **(headers or {})}, timeout=10
    )


def err(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def chat(model: str, **kw) -> str:
    import json

    return json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], **kw})


def test_malformed_json(gw):
    r = post(gw, "/v1/chat/completions", b'{"model": "mock/echo", "messages": [')
    assert r.status_code == 400 and err(r)["type"] == "invalid_request_error"
    assert "x-request-id" in r.headers


def test_non_object_body(gw):
    r = post(gw, "/v1/chat/completions", b"[1, 2]")
    assert r.status_code == 400 and "JSON object" in err(r)["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ('{"messages": [{"role": "user", "content": "x"}]}', "model"),
        ('{"model": 5, "messages": [{"role": "user", "content": "x"}]}', "model"),
        ('{"model": "mock/echo"}', "messages"),
        ('{"model": "mock/echo", "messages": []}', "messages"),
        ('{"model": "mock/echo", "messages": ["hi"]}', "messages[0]"),
        ('{"model": "mock/echo", "messages": [{"content": "x"}]}', "messages[0].role"),
        ('{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "temperature": 2.5}', "temperature"),
        ('{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', "temperature"),
        ('{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "top_p": -0.1}', "top_p"),
        ('{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "n": 0}', "n"),
        ('{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "n": 129}', "n"),
        ('{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}', "max_tokens"),
        ('{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "max_tokens": "10"}', "max_tokens"),
        (
            '{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "presence_penalty": 3}',
            "presence_penalty",
        ),
        (
            '{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "frequency_penalty": -2.1}',
            "frequency_penalty",
        ),
        (
            '{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "stop": ["a","b","c","d","e"]}',
            "stop",
        ),
        ('{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "stop": 7}', "stop"),
        ('{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "logprobs": 3}', "logprobs"),
        (
            '{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21}',
            "top_logprobs",
        ),
        ('{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream"),
        (
            '{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": true}}',
            "stream_options",
        ),
        (
            '{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "context_length_exceeded_behavior": "drop"}',
            "context_length_exceeded_behavior",
        ),
    ],
)
def test_chat_parameter_checks(gw, body, param):
    r = post(gw, "/v1/chat/completions", body)
    assert r.status_code == 400, r.text
    assert err(r)["param"] == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ('{"model": "mock/echo"}', "prompt"),
        ('{"model": "mock/echo", "prompt": {"a": 1}}', "prompt"),
        ('{"model": "mock/echo", "prompt": [1, "a"]}', "prompt"),
        ('{"model": "mock/echo", "prompt": "x", "logprobs": 6}', "logprobs"),
        ('{"model": "mock/echo", "prompt": "x", "n": 3, "best_of": 2}', "best_of"),
        ('{"model": "mock/echo", "prompt": "x", "echo": "yes"}', "echo"),
    ],
)
def test_completion_parameter_checks(gw, body, param):
    r = post(gw, "/v1/completions", body)
    assert r.status_code == 400, r.text
    assert err(r)["param"] == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ('{"model": "mock/embed"}', "input"),
        ('{"model": "mock/embed", "input": ""}', "input"),
        ('{"model": "mock/embed", "input": []}', "input"),
        ('{"model": "mock/embed", "input": "x", "encoding_format": "hex"}', "encoding_format"),
        ('{"model": "mock/embed", "input": "x", "dimensions": 0}', "dimensions"),
    ],
)
def test_embedding_parameter_checks(gw, body, param):
    r = post(gw, "/v1/embeddings", body)
    assert r.status_code == 400, r.text
    assert err(r)["param"] == param


def test_unknown_model_and_vendor(gw):
    for model in ("nosuchvendor/x", "plainname", "mock/"):
        r = post(gw, "/v1/chat/completions", chat(model))
        assert r.status_code == 404
        e = err(r)
        assert e["code"] == "model_not_found" and e["param"] == "model"


def test_model_not_allowed(gw):
    r = post(gw, "/v1/chat/completions", chat("faulty/ok"), {"authorization": f"Bearer {OTHER_KEY}"})
    assert r.status_code == 403 and err(r)["code"] == "model_not_allowed"


def test_missing_and_wrong_key(gw):
    r = httpx.post(gw.url + "/v1/chat/completions", content=chat("mock/echo"))
    assert r.status_code == 401 and err(r)["code"] == "invalid_api_key"
    r = httpx.post(gw.url + "/v1/chat/completions", content=chat("mock/echo"), headers={"x-api-key": "wrong"})
    assert r.status_code == 401
    r = httpx.post(gw.url + "/v1/chat/completions", content=chat("mock/echo"), headers={"x-api-key": CLIENT_KEY})
    assert r.status_code == 200


def test_body_too_large_is_413_without_reading_on(gw):
    big = chat("mock/echo", padding="x" * 10_000)
    r = post(gw, "/v1/chat/completions", big)
    assert r.status_code == 413 and err(r)["code"] == "request_too_large"
    # Declared length over the limit: refused from the header, before the body is sent.
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer "
            + CLIENT_KEY.encode()
            + b"\r\ncontent-type: application/json\r\ncontent-length: 100000000\r\n\r\n"
        )
        resp = http.client.HTTPResponse(s)
        resp.begin()
        assert resp.status == 413


def test_unknown_route_and_method(gw):
    r = httpx.get(gw.url + "/v1/nope", headers=H)
    assert r.status_code == 404 and err(r)["code"] == "unknown_url"
    r = httpx.get(gw.url + "/v1/chat/completions", headers=H)
    assert r.status_code == 405 and err(r)


def test_an_unknown_route_with_a_valid_key_is_recorded_under_a_bounded_label(gw):
    before = httpx.get(gw.url + "/v1/usage", headers=H).json()["requests"]
    for i in range(3):
        assert httpx.get(gw.url + f"/v1/nope-{i}" + "x" * 300, headers=H).status_code == 404
    assert httpx.get(gw.url + "/v1/nope", headers={"authorization": "Bearer wrong"}).status_code == 404
    # The three with the valid key (and the usage read before them) count as the key's requests.
    assert httpx.get(gw.url + "/v1/usage", headers=H).json()["requests"] == before + 4
    text = httpx.get(gw.url + "/metrics").text
    lines = [ln for ln in text.splitlines() if ln.startswith("switchyard_requests_total{") and 'status="404"' in ln]
    assert lines and all("nope" not in ln for ln in lines)  # paths never become label values
    assert any('endpoint="other"' in ln for ln in lines)


def test_upstream_4xx_keeps_status_and_message(gw):
    r = post(gw, "/v1/chat/completions", chat("faulty/status-422"))
    assert r.status_code == 422
    e = err(r)
    assert "simulated 422" in e["message"] and e["message"].startswith("faulty:")


def test_upstream_5xx(gw):
    r = post(gw, "/v1/chat/completions", chat("faulty/status-503"))
    assert r.status_code == 503 and "simulated 503" in err(r)["message"]
    r = post(gw, "/v1/chat/completions", chat("faulty/html-502"))
    assert r.status_code == 502 and err(r)


def test_upstream_refused_is_502(gw):
    r = post(gw, "/v1/chat/completions", chat("dead/x"))
    assert r.status_code == 502 and err(r)["code"] == "upstream_unreachable"


def test_upstream_timeout_is_504(gw):
    t = time.monotonic()
    r = post(gw, "/v1/chat/completions", chat("faulty/hang"))
    assert r.status_code == 504 and err(r)["code"] == "upstream_timeout"
    assert time.monotonic() - t < 5


def test_upstream_garbage_is_502(gw):
    r = post(gw, "/v1/chat/completions", chat("faulty/garbage"))
    assert r.status_code == 502 and err(r)["code"] == "upstream_bad_response"


def test_no_credential_or_trace_in_errors(gw):
    for model in ("faulty/garbage", "dead/x", "faulty/status-500"):
        r = post(gw, "/v1/chat/completions", chat(model))
        assert "sk-up" not in r.text and CLIENT_KEY not in r.text and "Traceback" not in r.text


def test_stream_cut_mid_way_ends_with_error_event(gw):
    with httpx.stream(
        "POST", gw.url + "/v1/chat/completions", content=chat("faulty/cut-stream", stream=True), headers=H
    ) as r:
        assert r.status_code == 200
        text = r.read().decode()
    assert "one " in text and "[DONE]" not in text
    assert text.rstrip().splitlines()[-1].startswith('data: {"error"')
    with pytest.raises(openai.APIError):
        list(
            sdk(gw).chat.completions.create(
                model="faulty/cut-stream", messages=[{"role": "user", "content": "x"}], stream=True
            )
        )


def test_stream_upstream_error_event(gw):
    with httpx.stream(
        "POST", gw.url + "/v1/chat/completions", content=chat("faulty/error-event", stream=True), headers=H
    ) as r:
        text = r.read().decode()
    assert "model crashed" in text and "[DONE]" not in text


def test_stream_idle_timeout_after_commit(gw):
    with httpx.stream(
        "POST", gw.url + "/v1/chat/completions", content=chat("faulty/hang-stream", stream=True), headers=H, timeout=10
    ) as r:
        text = r.read().decode()
    assert "two " in text and "upstream_timeout" in text and "[DONE]" not in text


def test_stream_that_fails_before_first_event_is_plain_json_error(gw):
    r = post(gw, "/v1/chat/completions", chat("faulty/status-500", stream=True))
    assert r.status_code == 500 and r.headers["content-type"].startswith("application/json")
    r = post(gw, "/v1/chat/completions", chat("faulty/hang", stream=True))
    assert r.status_code == 504


def test_client_disconnect_closes_upstream(gw, fault):
    _srv, app = fault
    before = app.disconnects
    with httpx.stream(
        "POST", gw.url + "/v1/chat/completions", content=chat("faulty/slow-stream", stream=True), headers=H
    ) as r:
        it = r.iter_lines()
        for line in it:
            if line.startswith("data:"):
                break
    left = time.monotonic()
    while app.disconnects == before and time.monotonic() < left + 5:
        time.sleep(0.02)
    assert app.disconnects == before + 1
    assert time.monotonic() - left < 0.9  # streams are watched from their start, not after a delay
    rec = gw.app.store.log[-1]
    assert (rec.status, rec.stream, rec.model) == (499, True, "faulty/slow-stream") and rec.completion_tokens >= 1


def test_client_that_leaves_a_slow_non_streamed_request_closes_upstream(gw, fault):
    _srv, app = fault
    before = app.disconnects
    with pytest.raises(httpx.ReadTimeout):
        post_slow = chat("patient/slow-json")
        httpx.post(
            gw.url + "/v1/chat/completions",
            content=post_slow,
            headers={**H, "content-type": "application/json"},
            timeout=httpx.Timeout(5, read=0.6),
        )
    deadline = time.monotonic() + 5
    while app.disconnects == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.disconnects == before + 1
    u = httpx.get(gw.url + "/v1/usage", headers=H).json()
    assert u["models"]["patient/slow-json"]["errors"] == 1  # recorded, as 499


def test_stream_without_upstream_usage_is_estimated_and_relayed(gw):
    chunks = list(
        sdk(gw).chat.completions.create(
            model="faulty/no-usage-stream", messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b c"


def test_oversized_upstream_answer_is_502(gw, monkeypatch):
    import gateway.wire.upstream

    monkeypatch.setattr(gateway.wire.upstream, "MAX_RESPONSE_BYTES", 1000)
    big = " ".join(["word"] * 400)  # the echoed answer is well over 1,000 bytes
    r = post(gw, "/v1/chat/completions", chat("faulty/ok").replace('"hi"', f'"{big}"'))
    assert r.status_code == 502 and err(r)["code"] == "upstream_bad_response"
    assert post(gw, "/v1/chat/completions", chat("faulty/ok")).status_code == 200


def test_a_bug_still_answers_in_openai_shape_without_a_traceback(gw, monkeypatch, caplog):
    import gateway.pipeline.generation
    import gateway.routes.models

    def boom(body):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(gateway.pipeline.generation, "parse_body", boom)
    monkeypatch.setattr(gateway.routes.models.ModelsRoutes, "models_for", lambda self, ctx: boom(None))
    with caplog.at_level("ERROR"):
        r = post(gw, "/v1/chat/completions", chat("mock/echo"))
        assert r.status_code == 500 and err(r)["code"] == "internal_error" and "simulated" not in r.text
        r = httpx.get(gw.url + "/v1/models", headers=H)
        assert r.status_code == 500 and err(r)["code"] == "internal_error"
    assert "Traceback" not in caplog.text and "simulated bug" in caplog.text


def test_a_translated_stream_of_unexpected_shape_ends_with_an_error_event(gw):
    with httpx.stream(
        "POST", gw.url + "/v1/chat/completions", content=chat("claude/anthropic-garbage", stream=True), headers=H
    ) as r:
        text = r.read().decode()
    assert r.status_code == 200 and "[DONE]" not in text
    assert text.rstrip().splitlines()[-1].startswith('data: {"error"')
