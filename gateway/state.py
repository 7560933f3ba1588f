"""Everything a request needs, built once from a Config and swapped whole on reload."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.accounting import Accountant
from gateway.auth import KeyTable
from gateway.balancer import Balancer
from gateway.config import Config
from gateway.routing import Router
from gateway.upstream import UpstreamClient


@dataclass(slots=True)
class State:
    config: Config
    keys: KeyTable
    router: Router
    upstream: UpstreamClient
    accountant: Accountant
    balancer: Balancer
    max_body: int


def build_state(
    cfg: Config, upstream: UpstreamClient, accountant: Accountant, balancer: Balancer | None = None
) -> State:
    return State(
        cfg, KeyTable(cfg), Router(cfg), upstream, accountant, balancer or Balancer(), cfg.server.max_body_bytes
    )
