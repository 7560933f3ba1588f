"""Retries, fallback, weighted choice and circuit breakers (DESIGN §1 "Resilience settings")."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter

import httpx
import openai
import pytest

from gateway.config import parse_config
from gateway.pipeline.balancer import CLOSED, HALF_OPEN, OPEN, Balancer
from gateway.pipeline.generation import _backoff
from gateway.pipeline.routing import Router
from simulators.faults import FaultUpstream
from tests.conftest import CLIENT_KEY, base_config
from tests.servers import ServerThread

H = {"authorization": f"Bearer {CLIENT_KEY}"}


@pytest.fixture(scope="module")
def fault():
    app = FaultUpstream()
    with ServerThread(app) as srv:
        yield srv, app


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


def test_retries_on_5xx_then_gives_the_upstream_error(fault, gateway_factory):
    srv, app = fault
    gw = gateway_factory(gw_config(srv.url))
    r = chat(gw, "faulty/status-500")
    assert r.status_code == 500
    assert app.attempts["status-500"] == 3  # first try + retries: 2


def test_flaky_upstream_recovers_within_retries(fault, gateway_factory):
    srv, app = fault
    gw = gateway_factory(gw_config(srv.url))
    name = f"flaky-2-{tag()}"
    r = chat(gw, f"faulty/{name}")
    assert r.status_code == 200 and app.attempts[name] == 3


def test_4xx_is_not_retried(fault, gateway_factory):
    srv, app = fault
    gw = gateway_factory(gw_config(srv.url))
    before = app.attempts.get("status-400", 0)
    assert chat(gw, "faulty/status-400").status_code == 400
    assert app.attempts["status-400"] == before + 1


def test_429_retry_after_is_honoured_and_passed_on(fault, gateway_factory):
    srv, app = fault
    gw = gateway_factory(gw_config(srv.url, retries=1, timeout=5))  # a deadline the wait fits in
    before = app.attempts.get("retry-after", 0)
    t = time.monotonic()
    r = chat(gw, "faulty/retry-after")
    assert time.monotonic() - t >= 0.9  # waited the upstream's Retry-After: 1
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert app.attempts["retry-after"] == before + 2
    with pytest.raises(openai.RateLimitError):
        openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0).chat.completions.create(
            model="faulty/retry-after", messages=[{"role": "user", "content": "x"}]
        )


@pytest.mark.parametrize("stream", [False, True])
def test_fallback_to_next_rank(fault, gateway_factory, stream):
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
    gw = gateway_factory(cfg)
    r = chat(gw, "resilient", stream=stream)
    assert r.status_code == 200
    if stream:
        assert r.text.rstrip().endswith("data: [DONE]") and '"model":"resilient"' in r.text
    else:
        assert r.json()["model"] == "resilient" and r.json()["choices"][0]["message"]["content"] == "a b"


def test_circuit_opens_then_half_opens_and_closes(fault, gateway_factory):
    srv, app = fault
    name = f"flaky-3-{tag()}"
    gw = gateway_factory(gw_config(srv.url, retries=0, circuit_breaker={"failures": 2, "cooldown": 0.5}))
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


def test_weighted_choice_is_statistically_right():
    cfg = parse_config(
        {
            "keys": [{"name": "a", "key": "k"}],
            "providers": {"a": {"kind": "mock"}, "b": {"kind": "mock"}, "c": {"kind": "mock"}},
            "models": [
                {
                    "name": "m",
                    "deployments": [
                        {"provider": "a", "upstream": "x", "weight": 3, "rank": 0},
                        {"provider": "b", "upstream": "x", "weight": 1, "rank": 0},
                        {"provider": "c", "upstream": "x", "rank": 1},
                    ],
                }
            ],
        },
        env={},
    )
    route = Router(cfg).resolve("m")
    bal = Balancer(rng=random.Random(1234))
    firsts = Counter(bal.order(route)[0].provider for _ in range(4000))
    assert 2850 <= firsts["a"] <= 3150 and firsts["a"] + firsts["b"] == 4000
    assert all(bal.order(route)[2].provider == "c" for _ in range(50))


def test_least_in_flight():
    cfg = parse_config(
        {
            "keys": [{"name": "a", "key": "k"}],
            "providers": {"a": {"kind": "mock"}, "b": {"kind": "mock"}},
            "models": [
                {
                    "name": "m",
                    "strategy": "least_in_flight",
                    "deployments": [
                        {"provider": "a", "upstream": "x", "rank": 0},
                        {"provider": "b", "upstream": "x", "rank": 0},
                    ],
                }
            ],
        },
        env={},
    )
    route = Router(cfg).resolve("m")
    bal = Balancer()
    a = route.deployments[0]
    assert bal.acquire(a)
    assert bal.order(route, least_in_flight=True)[0].provider == "b"
    bal.release(a)


def test_breaker_states_with_a_fake_clock():
    now = [0.0]
    seen = []
    cfg = parse_config(
        {
            "keys": [{"name": "a", "key": "k"}],
            "providers": {"a": {"kind": "mock", "circuit_breaker": {"failures": 2, "cooldown": 10}}},
        },
        env={},
    )
    dep = Router(cfg).resolve("a/x").deployments[0]
    bal = Balancer(clock=lambda: now[0], on_state=lambda d, s: seen.append(s))
    for _ in range(2):
        assert bal.acquire(dep)
        bal.failure(dep)
        bal.release(dep)
    assert not bal.acquire(dep) and bal.retry_after([dep]) == 10
    now[0] = 10.0
    assert bal.acquire(dep)  # the probe
    assert not bal.acquire(dep)  # only one probe at a time
    bal.success(dep)
    bal.release(dep)
    assert bal.acquire(dep)
    assert seen == [OPEN, HALF_OPEN, CLOSED]


def test_backoff():
    assert _backoff(0, 0.25, None, 0.0) == 0.125 and _backoff(0, 0.25, None, 1.0) == 0.25
    assert _backoff(3, 0.25, None, 1.0) == 2.0 and _backoff(10, 0.25, None, 1.0) == 8.0
    assert _backoff(0, 0.25, "2", 0.5) == 2.0 and _backoff(0, 0.25, "120", 0.5) is None
    assert _backoff(1, 0.25, "soon", 0.0) == 0.25


def test_load_shedding_beyond_max_concurrent(fault, gateway_factory):
    import concurrent.futures

    srv, _app = fault
    cfg = gw_config(srv.url, retries=0)
    cfg["server"]["max_concurrent_requests"] = 2
    gw = gateway_factory(cfg)
    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        codes = sorted(r.status_code for r in ex.map(lambda _: chat(gw, "faulty/hang"), range(6)))
    assert codes.count(504) == 2 and codes.count(503) == 4
    r = chat(gw, "mock/echo")
    assert r.status_code == 200


def test_translator_shape_errors_become_502():
    from gateway.config import ProviderConfig
    from gateway.errors import GatewayError
    from gateway.pipeline.relay import feed as _feed
    from providers.base import SSEEvent
    from providers.openai import OpenAIAdapter

    class Broken:
        def feed(self, ev):
            return {}["missing"]

    adapter = OpenAIAdapter("up", ProviderConfig(kind="openai", base_url="http://x/v1"))
    with pytest.raises(GatewayError) as e:
        _feed(Broken(), adapter, SSEEvent(None, b"{}"))
    assert e.value.status == 502 and e.value.code == "upstream_bad_response"
