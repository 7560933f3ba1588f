"""The e2e fixtures: simulated upstreams, the real gateway under uvicorn on loopback, the SDK, Redis.

A test gets a running gateway in front of a simulated upstream from these fixtures:

- ``upstream``: module-scoped, speaking ``dialect``. ``dialect`` is ``openai`` unless a module
  overrides the fixture (``@pytest.fixture(scope="module") def dialect(): return "gemini"``) or a test
  parametrizes it (``@pytest.mark.parametrize("dialect", ["anthropic", "cohere"], indirect=True)``).
  openai, anthropic, gemini and cohere are ``simulators.server.MockUpstream``; azure and fireworks,
  which have no simulator, are a ``Recorder`` whose ``reply`` the test sets.
- ``gateway_config``: ``base_config()`` plus a provider named after the dialect pointed at ``upstream``
  (a module overrides it to add models or settings); ``gateway``: the gateway started from it;
  ``client``: an ``openai.OpenAI`` for that gateway.
- ``gateway_for(cfg)`` starts a gateway from any config, ``sdk(gw)`` makes a client for any gateway.

A new dialect's first e2e test is a parameter: its name in ``SIMULATED`` (or ``RECORDED``), then
``dialect`` overridden in its module or parametrized, as tests/e2e/test_anthropic.py does.

``fault`` is the misbehaving upstream of ``simulators.faults``; ``H`` the client's auth header.
``redis_prefix`` gives a test its own keys in the shared Redis and deletes them (``redis_prefixes`` a
module fixture's); ``shared_redis`` and ``cluster`` are the shared Redis and a private 3-node Redis Cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import openai
import pytest
import redis

from gateway.app import Gateway
from gateway.config import parse_config
from simulators.faults import FaultUpstream
from simulators.server import MockUpstream
from tests.support import wait_until
from tests.support.recorder import Recorder
from tests.support.redis import REDIS_URL, RedisProcess, cluster_port, forget_prefixes
from tests.support.servers import ServerThread

CLIENT_KEY = "sk-test-client-key-1"
OTHER_KEY = "sk-test-client-key-2"
ADMIN_KEY = "sk-test-admin-key"
UPSTREAM_KEY = "sk-upstream-secret-xyz"
H = {"authorization": f"Bearer {CLIENT_KEY}"}  # the client's auth header, for raw HTTP calls

SIMULATED = ("openai", "anthropic", "gemini", "cohere")  # MockUpstream's dialects
RECORDED = ("azure", "fireworks")  # no simulator: a Recorder answers what the test sets

GatewayFor = Callable[[dict[str, Any]], ServerThread]


class Upstream(NamedTuple):
    srv: ServerThread
    app: Any  # MockUpstream, or Recorder for the RECORDED dialects

    @property
    def url(self) -> str:
        return self.srv.url


def provider_for(dialect: str, url: str, **settings: Any) -> dict[str, Any]:
    """A provider of kind ``dialect`` at ``url`` (OpenAI's API under /v1) with the upstream key."""
    base_url = url + "/v1" if dialect == "openai" else url
    return {"kind": dialect, "base_url": base_url, "api_key": UPSTREAM_KEY, "timeout": 5, **settings}


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
        cfg["providers"]["openai"] = provider_for("openai", upstream_url)
        cfg["models"].append({"name": "openai/gpt-4o-mini", "context_window": 128000})
        cfg["models"].append({"name": "smart", "deployments": [{"provider": "openai", "upstream": "gpt-4o"}]})
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


def sdk(gw: ServerThread | str, key: str = CLIENT_KEY, timeout: float = 30.0) -> openai.OpenAI:
    """The official SDK for a gateway (a running ``ServerThread`` or its URL), without retries."""
    url = gw if isinstance(gw, str) else gw.url
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=timeout)


def assert_credentials(headers: dict[str, str]) -> None:
    """The client's own key never reaches an upstream."""
    assert all(CLIENT_KEY not in v for v in headers.values())


# -- upstreams ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dialect(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "openai")


@pytest.fixture(scope="module")
def upstream(dialect: str) -> Iterator[Upstream]:
    if dialect in RECORDED:
        with ServerThread(Recorder(), lifespan="off") as srv:
            yield Upstream(srv, srv.app)
    elif dialect in SIMULATED:
        with ServerThread(MockUpstream(dialect)) as srv:
            yield Upstream(srv, srv.app)
    else:
        raise ValueError(f"no upstream for dialect {dialect!r}: simulated {SIMULATED}, recorded {RECORDED}")


@pytest.fixture(scope="module")
def fault() -> Iterator[tuple[ServerThread, FaultUpstream]]:
    app = FaultUpstream()
    with ServerThread(app) as srv:
        yield srv, app


# -- the gateway and its client -------------------------------------------------------------------------


@pytest.fixture
def gateway_for() -> Iterator[GatewayFor]:
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
def gateway_config(dialect: str, upstream: Upstream) -> dict[str, Any]:
    if dialect == "openai":
        return base_config(upstream.url)
    cfg = base_config()
    cfg["providers"][dialect] = provider_for(dialect, upstream.url)
    return cfg


@pytest.fixture
def gateway(upstream: Upstream, gateway_config: dict[str, Any], gateway_for: GatewayFor) -> ServerThread:
    upstream.app.requests.clear()
    return gateway_for(gateway_config)


@pytest.fixture
def client(gateway: ServerThread) -> openai.OpenAI:
    return sdk(gateway)


# -- Redis ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_prefixes() -> Iterator[Callable[[], str]]:
    """Hands out key prefixes for the shared Redis, each unique; deletes every key under them at the end.

    The end of the session comes after every gateway has stopped, so this also takes what one wrote
    while stopping (its last usage batch), after its test's own ``redis_prefix`` clean-up had run.
    """
    issued: list[str] = []

    def new() -> str:
        prefix = f"sytest:{uuid.uuid4().hex[:12]}:"
        issued.append(prefix)
        return prefix

    yield new
    forget_prefixes(issued)


@pytest.fixture
def redis_prefix(redis_prefixes: Callable[[], str]) -> Iterator[str]:
    """A key prefix unique to this test, so tests never see each other's keys; its keys are deleted after."""
    prefix = redis_prefixes()
    yield prefix
    forget_prefixes([prefix])


@pytest.fixture
def shared_redis(redis_prefix: str) -> Iterator[redis.Redis]:
    """A client of the shared test Redis (``redis_prefix`` deletes this test's keys afterwards)."""
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        r.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    yield r
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
