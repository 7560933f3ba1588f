"""Per-key limits end to end: two `switchyard serve` processes sharing one Redis, driven by the OpenAI SDK."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

from gateway.pipeline.state import State
from tests.e2e.conftest import sdk
from tests.support import ROOT
from tests.support.redis import REDIS_URL, forget_prefixes
from tests.support.servers import free_port

LIMITED_KEY = "sk-e2e-limited"
STREAM_KEY = "sk-e2e-stream"
FREE_KEY = "sk-e2e-free"
MESSAGES = [{"role": "user", "content": "hi"}]


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


pytestmark = [
    pytest.mark.skipif(not hasattr(State, "limiter"), reason="the limiter is not wired into the gateway yet"),
    pytest.mark.skipif(not _redis_up(), reason="no Redis at " + REDIS_URL),
]


def _serve(config: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        [*argv, "--port", str(port), "--workers", "1"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    return proc, f"http://127.0.0.1:{port}"


def _wait_ready(proc: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("gateway exited: " + (proc.stderr.read() if proc.stderr else b"").decode()[-2000:])
        try:
            if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("gateway did not become ready")


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory, redis_prefixes: Callable[[], str]) -> Iterator[list[str]]:
    """Two gateway processes with the same config: one Redis, one key limited to 5 requests a minute."""
    prefix = redis_prefixes()
    cfg = {
        "server": {"access_log": False, "workers": 1},
        "keys": [
            {"name": "limited", "key": LIMITED_KEY, "limits": {"rpm": 5}},
            {"name": "streamer", "key": STREAM_KEY, "limits": {"rpm": 2, "tpm": 100_000}},
            {"name": "free", "key": FREE_KEY},
        ],
        "providers": {"mock": {"kind": "mock"}},
        "models": [{"name": "mock/echo", "context_window": 4096}],
        "usage": {"redis_url": REDIS_URL, "prefix": prefix},
    }
    path = tmp_path_factory.mktemp("limits") / "switchyard.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    started = [_serve(path) for _ in range(2)]
    try:
        for proc, url in started:
            _wait_ready(proc, url)
        yield [url for _, url in started]
    finally:
        for proc, _ in started:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        forget_prefixes([prefix])  # once both have stopped


def _call(url: str, key: str) -> Any:
    """The raw response on success, the SDK's exception otherwise."""
    try:
        return sdk(url, key).chat.completions.with_raw_response.create(model="mock/echo", messages=MESSAGES)
    except openai.APIStatusError as e:
        return e


def test_two_gateways_admit_exactly_rpm_between_them(gateways: list[str]) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: _call(gateways[i % 2], LIMITED_KEY), range(8)))
    ok = [r for r in results if not isinstance(r, Exception)]
    limited = [r for r in results if isinstance(r, Exception)]
    assert len(ok) == 5
    assert all(isinstance(e, openai.RateLimitError) for e in limited) and len(limited) == 3
    # Each admission saw a distinct count: remaining 4, 3, 2, 1, 0 in some order.
    assert sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in ok) == [0, 1, 2, 3, 4]
    for r in ok:
        assert r.headers["x-ratelimit-limit-requests"] == "5"
        assert r.headers["x-ratelimit-reset-requests"].endswith("s")
        assert "x-ratelimit-limit-tokens" not in r.headers  # no tpm on this key
        assert r.parse().choices[0].message.content == "hi"
    for e in limited:
        assert 1 <= int(e.response.headers["retry-after"]) <= 60
        assert e.response.headers["x-ratelimit-remaining-requests"] == "0"
        assert (e.code, e.type) == ("rate_limit_exceeded", "requests")
        assert "requests per min (RPM): Limit 5" in e.message


def test_streamed_requests_carry_headers_and_are_limited_before_streaming(gateways: list[str]) -> None:
    for url in gateways:
        with sdk(url, STREAM_KEY).chat.completions.with_streaming_response.create(
            model="mock/echo", messages=MESSAGES, stream=True
        ) as resp:
            assert resp.headers["x-ratelimit-limit-requests"] == "2"
            assert resp.headers["x-ratelimit-limit-tokens"] == "100000"
            assert int(resp.headers["x-ratelimit-remaining-tokens"]) < 100_000  # the prompt estimate is charged
            assert "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices) == "hi"
    with pytest.raises(openai.RateLimitError) as ei:
        sdk(gateways[0], STREAM_KEY).chat.completions.create(model="mock/echo", messages=MESSAGES, stream=True)
    assert int(ei.value.response.headers["retry-after"]) >= 1


def test_key_without_limits_has_no_ratelimit_headers(gateways: list[str]) -> None:
    for i in range(7):
        r = _call(gateways[i % 2], FREE_KEY)
        assert not isinstance(r, Exception)
        assert not [h for h in r.headers if h.lower().startswith("x-ratelimit-")]
