"""Everything a request needs, built once from a Config and swapped whole on reload."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.accounting.accountant import Accountant
from gateway.config import Config
from gateway.pipeline.auth import KeyTable, RuntimeKeys
from gateway.pipeline.balancer import Balancer
from gateway.pipeline.limits import Limiter
from gateway.pipeline.routing import Router
from gateway.wire.upstream import UpstreamClient


@dataclass(slots=True)
class State:
    config: Config
    keys: KeyTable
    router: Router
    upstream: UpstreamClient
    accountant: Accountant
    balancer: Balancer
    limiter: Limiter
    max_body: int
    responses: Any = None  # the ResponseStore (stored responses), shared across reloads


def build_state(
    cfg: Config,
    upstream: UpstreamClient,
    accountant: Accountant,
    balancer: Balancer | None = None,
    limiter: Limiter | None = None,
    responses: Any = None,
    runtime_keys: RuntimeKeys | None = None,
) -> State:
    """A State for ``cfg``; the balancer (breaker state), limiter (connections) and runtime keys
    carry over reloads."""
    if limiter is None:
        limiter = Limiter(cfg.usage.redis_url, cfg.usage.prefix, cfg.server.limits_when_redis_down)
    return State(
        cfg,
        KeyTable(cfg, runtime_keys),
        Router(cfg),
        upstream,
        accountant,
        balancer or Balancer(),
        limiter,
        cfg.server.max_body_bytes,
        responses,
    )
