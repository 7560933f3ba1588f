"""Keys -> principals, model globs, and vendor/model routing, on plain config dicts."""

from __future__ import annotations

import hashlib

import pytest

from gateway.config import parse_config
from gateway.errors import GatewayError
from gateway.pipeline.auth import KeyTable
from gateway.pipeline.routing import Router


def cfg():
    return parse_config(
        {
            "keys": [
                {"name": "a", "key": "sk-a", "models": ["openai/gpt-4o*", "mock/*", "smart"]},
                {"name": "b", "sha256": hashlib.sha256(b"sk-b").hexdigest()},
            ],
            "providers": {
                "openai": {"kind": "openai", "base_url": "https://api.openai.com/v1", "api_key": "sk-up"},
                "fw": {
                    "kind": "openai",
                    "base_url": "https://fw.example/v1",
                    "context_length_exceeded_behavior": "truncate",
                },
                "mock": {"kind": "mock"},
            },
            "models": [
                {"name": "openai/gpt-4o-mini", "context_window": 128000, "tokenizer": "o200k_base"},
                {"name": "openai/renamed", "upstream": "gpt-4o-2024-08-06"},
                {"name": "fw/llama", "upstream": "accounts/fireworks/models/llama"},
                {
                    "name": "smart",
                    "context_window": 1000,
                    "deployments": [
                        {"provider": "mock", "upstream": "echo", "rank": 1},
                        {"provider": "openai", "upstream": "gpt-4o", "weight": 2, "rank": 0},
                    ],
                },
            ],
        },
        env={},
    )


def test_bearer_and_x_api_key():
    t = KeyTable(cfg())
    assert t.authenticate(b"Bearer sk-a", None).name == "a"
    assert t.authenticate(b"bearer  sk-b ", None).name == "b"
    assert t.authenticate(None, b"sk-b").name == "b"
    for auth, x in ((None, None), (b"Bearer nope", None), (b"Basic sk-a", None), (None, b""), (b"Bearer", None)):
        with pytest.raises(GatewayError) as e:
            t.authenticate(auth, x)
        assert e.value.status == 401 and e.value.code == "invalid_api_key"


def test_globs():
    t = KeyTable(cfg())
    a = t.authenticate(b"Bearer sk-a", None)
    assert a.allows("openai/gpt-4o-mini") and a.allows("mock/x") and a.allows("smart")
    assert not a.allows("openai/o1") and not a.allows("fw/llama")
    assert a.may_reach_vendor("openai") and a.may_reach_vendor("mock") and not a.may_reach_vendor("fw")
    b = t.authenticate(None, b"sk-b")
    assert b.allows("anything/at-all") and b.may_reach_vendor("fw")


def test_routing_configured_passthrough_alias():
    r = Router(cfg())
    route = r.resolve("openai/gpt-4o-mini")
    dep = route.deployments[0]
    assert route.configured and dep.provider == "openai" and dep.target.upstream_model == "gpt-4o-mini"
    assert dep.facts.context_window == 128000 and dep.facts.overflow == "error"
    assert r.resolve("openai/renamed").deployments[0].target.upstream_model == "gpt-4o-2024-08-06"
    p = r.resolve("openai/some-new-model")
    assert not p.configured and p.deployments[0].target.upstream_model == "some-new-model"
    assert r.resolve("openai/org/model:tag").deployments[0].target.upstream_model == "org/model:tag"
    fw = r.resolve("fw/llama").deployments[0]
    assert fw.target.upstream_model == "accounts/fireworks/models/llama" and fw.facts.overflow == "truncate"
    smart = r.resolve("smart")
    assert [d.provider for d in smart.deployments] == ["openai", "mock"]  # sorted by rank
    assert smart.deployments[0].weight == 2 and smart.deployments[0].facts.context_window == 1000


@pytest.mark.parametrize("name", ["nope/x", "plain", "openai/", "/x", ""])
def test_unknown_models_are_404(name):
    with pytest.raises(GatewayError) as e:
        Router(cfg()).resolve(name)
    assert e.value.status == 404 and e.value.code == "model_not_found"
