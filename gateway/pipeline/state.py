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
from gateway.pipeline.signatures import SignatureStore
from gateway.wire.upstream import UpstreamClient


@dataclass(frozen=True, slots=True)
class Shared:
    """The parts that outlive a reload: connections, breaker state, stores and caches."""

    upstream: UpstreamClient
    accountant: Accountant
    balancer: Balancer
    limiter: Limiter
    responses: Any = None  # the ResponseStore (stored responses)
    runtime_keys: RuntimeKeys | None = None
    signatures: SignatureStore | None = None  # thought signatures kept for replayed tool calls


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
    signatures: SignatureStore | None = None  # shared across reloads


def build_state(cfg: Config, shared: Shared) -> State:
    """A State for ``cfg`` around the parts that carry over reloads."""
    return State(
        cfg,
        KeyTable(cfg, shared.runtime_keys),
        Router(cfg),
        shared.upstream,
        shared.accountant,
        shared.balancer,
        shared.limiter,
        cfg.server.max_body_bytes,
        shared.responses,
        shared.signatures,
    )
