"""Retries, fallback, weighted choice and circuit breakers."""

from __future__ import annotations

import time
import uuid

import httpx
import openai
import pytest

from tests.e2e.conftest import H, base_config, sdk


def gw_config(fault_url: str, **provider) -> dict:
    cfg = base_config()
    cfg["providers"]["faulty"] = {
        "kind": "openai",
        "base_url": fault_url + "/v1",
        "timeout": 0.5,
        "retries": 2,
        "retry_backoff": 0.01,
        **provider,
    }
    return cfg


def chat(gw, model: str, stream: bool = False) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "a b"}], "stream": stream}
    return httpx.post(gw.url + "/v1/chat/completions", json=body, headers=H, timeout=10)


def tag() -> str:
    return uuid.uuid4().hex[:8]


def test_retries_on_5xx_then_gives_the_upstream_error(fault, gateway_for):
    srv, app = fault
    gw = gateway_for(gw_config(srv.url))
    r = chat(gw, "faulty/status-500")
    assert r.status_code == 500
    assert app.attempts["status-500"] == 3  # first try + retries: 2


def test_flaky_upstream_recovers_within_retries(fault, gateway_for):
    srv, app = fault
    gw = gateway_for(gw_config(srv.url))
    name = f"flaky-2-{tag()}"
    r = chat(gw, f"faulty/{name}")
    assert r.status_code == 200 and app.attempts[name] == 3


def test_4xx_is_not_retried(fault, gateway_for):
    srv, app = fault
    gw = gateway_for(gw_config(srv.url))
    before = app.attempts.get("status-400", 0)
    assert chat(gw, "faulty/status-400").status_code == 400
    assert app.attempts["status-400"] == before + 1


def test_429_retry_after_is_honoured_and_passed_on(fault, gateway_for):
    srv, app = fault
    gw = gateway_for(gw_config(srv.url, retries=1, timeout=5))  # a deadline the wait fits in
    before = app.attempts.get("retry-after", 0)
    t = time.monotonic()
    r = chat(gw, "faulty/retry-after")
    assert time.monotonic() - t >= 0.9  # waited the upstream's Retry-After: 1
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert app.attempts["retry-after"] == before + 2
    with pytest.raises(openai.RateLimitError):
        sdk(gw).chat.completions.create(model="faulty/retry-after", messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize("stream", [False, True])
def test_fallback_to_next_rank(fault, gateway_for, stream):
    srv, _app = fault
    # The hung deployment gets its per-try share of the request's deadline; the next rank the rest.
    cfg = gw_config(srv.url, retries=0, timeout=5, attempt_timeout=0.5)
    cfg["models"].append(
        {
            "name": "resilient",
            "deployments": [
                {"provider": "faulty", "upstream": "status-503"},
                {"provider": "faulty", "upstream": "hang"},
                {"provider": "mock", "upstream": "echo"},
            ],
        }
    )
    gw = gateway_for(cfg)
    r = chat(gw, "resilient", stream=stream)
    assert r.status_code == 200
    if stream:
        assert r.text.rstrip().endswith("data: [DONE]") and '"model":"resilient"' in r.text
    else:
        assert r.json()["model"] == "resilient" and r.json()["choices"][0]["message"]["content"] == "a b"


def test_circuit_opens_then_half_opens_and_closes(fault, gateway_for):
    srv, app = fault
    name = f"flaky-3-{tag()}"
    gw = gateway_for(gw_config(srv.url, retries=0, circuit_breaker={"failures": 2, "cooldown": 0.5}))
    assert chat(gw, f"faulty/{name}").status_code == 503
    assert chat(gw, f"faulty/{name}").status_code == 503
    r = chat(gw, f"faulty/{name}")  # open: refused locally
    assert r.status_code == 503 and r.json()["error"]["code"] == "upstream_unavailable"
    assert int(r.headers["retry-after"]) >= 1 and app.attempts[name] == 2
    time.sleep(0.6)
    assert chat(gw, f"faulty/{name}").status_code == 503  # the half-open probe fails (3rd failure)
    assert chat(gw, f"faulty/{name}").json()["error"]["code"] == "upstream_unavailable"  # open again
    time.sleep(0.6)
    assert chat(gw, f"faulty/{name}").status_code == 200  # probe succeeds: closed
    assert chat(gw, f"faulty/{name}").status_code == 200
    assert app.attempts[name] == 5


def test_load_shedding_beyond_max_concurrent(fault, gateway_for):
    import concurrent.futures

    srv, _app = fault
    cfg = gw_config(srv.url, retries=0)
    cfg["server"]["max_concurrent_requests"] = 2
    gw = gateway_for(cfg)
    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        codes = sorted(r.status_code for r in ex.map(lambda _: chat(gw, "faulty/hang"), range(6)))
    assert codes.count(504) == 2 and codes.count(503) == 4
    r = chat(gw, "mock/echo")
    assert r.status_code == 200
