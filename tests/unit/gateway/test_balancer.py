"""The balancer (gateway/pipeline/balancer.py): weighted choice, least in flight, circuit breaker states."""

from __future__ import annotations

import random
from collections import Counter

from gateway.config import parse_config
from gateway.pipeline.balancer import CLOSED, HALF_OPEN, OPEN, Balancer
from gateway.pipeline.routing import Router


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
