"""Vendor/model routing (gateway/pipeline/routing.py): configured models, pass-through, aliases."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.pipeline.routing import Router
from tests.unit.gateway import cfg


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
