"""The e2e fixtures: a simulated upstream and the real gateway, each under uvicorn on loopback, and Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway.app import Gateway
from gateway.config import parse_config
from simulators.server import MockUpstream
from tests.support import wait_until
from tests.support.redis import REDIS_URL, RedisProcess, cluster_port, delete_prefix
from tests.support.servers import ServerThread

CLIENT_KEY = "sk-test-client-key-1"
OTHER_KEY = "sk-test-client-key-2"
ADMIN_KEY = "sk-test-admin-key"
UPSTREAM_KEY = "sk-upstream-secret-xyz"


@pytest.fixture(scope="module")
def openai_upstream() -> Iterator[tuple[ServerThread, MockUpstream]]:
    app = MockUpstream("openai")
    with ServerThread(app) as srv:
        yield srv, app


def base_config(upstream_url: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A config dict with a client key, a restricted key, an admin key, mock and (optionally) an OpenAI upstream."""
    cfg: dict[str, Any] = {
        "server": {"access_log": False},
        "keys": [
            {"name": "team-a", "key": CLIENT_KEY},
            {"name": "team-b", "key": OTHER_KEY, "models": ["mock/*"]},
            {"name": "ops", "key": ADMIN_KEY, "admin": True},
        ],
        "providers": {"mock": {"kind": "mock"}},
        "models": [{"name": "mock/echo", "context_window": 4096}],
    }
    if upstream_url:
        cfg["providers"]["openai"] = {
            "kind": "openai",
            "base_url": upstream_url + "/v1",
            "api_key": UPSTREAM_KEY,
            "timeout": 5,
        }
        cfg["models"].append({"name": "openai/gpt-4o-mini", "context_window": 128000})
        cfg["models"].append({"name": "smart", "deployments": [{"provider": "openai", "upstream": "gpt-4o"}]})
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


@pytest.fixture
def gateway_factory() -> Iterator[Callable[[dict[str, Any]], ServerThread]]:
    """Start the real gateway app from a config dict; stopped at the end of the test."""
    started: list[ServerThread] = []

    def start(cfg: dict[str, Any]) -> ServerThread:
        srv = ServerThread(Gateway(parse_config(cfg, env={}))).start()
        started.append(srv)
        return srv

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def gateway(
    openai_upstream: tuple[ServerThread, MockUpstream], gateway_factory: Callable[[dict[str, Any]], ServerThread]
) -> ServerThread:
    srv, app = openai_upstream
    app.requests.clear()
    return gateway_factory(base_config(srv.url))


@pytest.fixture
def shared_redis(redis_prefix: str) -> Iterator[redis.Redis]:
    """A client of the shared test Redis; this test's keys are deleted afterwards."""
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        r.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    yield r
    delete_prefix(r, redis_prefix)
    r.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[RedisProcess]]:
    """Three masters on loopback, slots split in thirds (what ``redis-cli --cluster create`` does, faster)."""
    nodes = []
    for i in range(3):
        d = tmp_path / f"n{i}"
        d.mkdir()
        extra = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        nodes.append(RedisProcess(d, port=cluster_port(), extra=extra))
    clients: list[redis.Redis] = []
    try:
        for n in nodes:
            n.start()
            clients.append(n.client())
        third = 16384 // 3
        bounds = [(0, third - 1), (third, 2 * third - 1), (2 * third, 16383)]
        for c, (lo, hi) in zip(clients, bounds, strict=True):
            c.execute_command("CLUSTER", "ADDSLOTS", *range(lo, hi + 1))
        for n in nodes[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", n.port)

        def ready() -> bool:
            return all(c.cluster("info")["cluster_state"] == "ok" and len(c.cluster("slots")) == 3 for c in clients)

        if not wait_until(ready, timeout=15, step=0.05):
            pytest.skip("a local Redis Cluster did not form")
        yield nodes
    finally:
        for c in clients:
            c.close()
        for n in nodes:
            n.stop()
