"""Shared fixtures: a simulated upstream and the real gateway, each under uvicorn on loopback.

Also marks every test by its folder: ``tests/e2e/`` ``e2e``, ``tests/deploy/`` ``deploy`` (so
``-m "not e2e and not deploy"`` or simply ``pytest tests/unit`` is the quick loop).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import parse_config
from simulators.server import MockUpstream
from tests.support.servers import ServerThread

CLIENT_KEY = "sk-test-client-key-1"
OTHER_KEY = "sk-test-client-key-2"
ADMIN_KEY = "sk-test-admin-key"
UPSTREAM_KEY = "sk-upstream-secret-xyz"

REDIS_URL = os.environ.get("SWITCHYARD_TEST_REDIS", "redis://127.0.0.1:6379/0")

MARKED_FOLDERS = {"e2e": pytest.mark.e2e, "deploy": pytest.mark.deploy}  # tests/<folder>/ -> marker


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        folder = item.path.relative_to(here).parts[0] if item.path.is_relative_to(here) else None
        if folder in MARKED_FOLDERS:
            item.add_marker(MARKED_FOLDERS[folder])


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix unique to this test, so tests never see each other's keys."""
    return f"sytest:{uuid.uuid4().hex[:12]}:"


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
