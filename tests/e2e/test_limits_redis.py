"""Per-key limits in a real Redis: the semantics of tests/unit/gateway/test_limits.py again, and the Redis specifics.

The semantics tests are imported from the unit file and run here with ``mode`` "redis", on the shared
server at ``REDIS_URL`` with a per-test prefix; tests that stop or break Redis start their own
``redis-server`` (or a silent TCP listener) on a free port.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from gateway.config import Limits
from gateway.errors import GatewayError
from gateway.pipeline.limits import EMPTY, Admission, Limiter, LimiterTuning
from gateway.pipeline.limits import limiter as limits_mod
from tests.support import ROOT
from tests.support.redis import REDIS_URL
from tests.support.servers import free_port
from tests.unit.gateway.test_limits import (  # noqa: F401  (collected here again, with mode "redis")
    hdr,
    limiter,
    refused,
    run,
    test_longest_wait_is_reported,
    test_request_larger_than_tpm_says_so,
    test_rpm_exact_with_openai_headers_and_body,
    test_tokens_per_day_budget,
    test_tpm_charges_estimate_then_reconciles,
    test_window_rolls,
)


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


REDIS_UP = _redis_up()


@pytest.fixture(params=["redis"])
def mode(request: pytest.FixtureRequest) -> str:
    if not REDIS_UP:
        pytest.skip("no Redis at " + REDIS_URL)
    return request.param


@pytest.fixture
def clean_prefix(redis_prefix: str) -> str:
    """``redis_prefix``: its keys are deleted afterwards (they would expire anyway)."""
    return redis_prefix


# -- Redis specifics ------------------------------------------------------------------------------------


@pytest.mark.skipif(not REDIS_UP, reason="no Redis")
def test_redis_keys_are_hash_tagged_and_expire(clean_prefix: str) -> None:
    async def go() -> None:
        async with limiter(REDIS_URL, clean_prefix) as lim:
            a = await lim.admit("team-a", Limits(rpm=5, tpm=500, tokens_per_day=5000), 7)
            lim.settle(a, 9)
            assert await lim.flush()

    run(go())
    r = redis.Redis.from_url(REDIS_URL)
    keys = sorted(k.decode() for k in r.scan_iter(match=clean_prefix + "*"))
    assert keys == [f"{clean_prefix}rl:{{team-a}}:{s}" for s in ("rpm", "tpd", "tpm")]
    assert len({key_slot(k.encode()) for k in keys}) == 1
    for k in keys:
        assert 0 < r.pttl(k) <= 2 * 86_400_000
    assert int(r.hget(f"{clean_prefix}rl:{{team-a}}:tpd", "used")) == 9
    assert sum(int(v) for v in r.hvals(f"{clean_prefix}rl:{{team-a}}:tpm")) == 9


# One "gateway process": a Limiter on the shared Redis; for each race, "ready", then on "go" n concurrent
# admissions. A plain subprocess pays the interpreter start-up once for all races.
_CHILD = """
import asyncio, json, sys
from gateway.config import Limits
from gateway.errors import GatewayError
from gateway.pipeline.limits import Admission, Limiter, LimiterTuning

async def main(url, prefix, races, n):
    # A generous timeout: this is about atomicity, and a cold burst on a busy box may exceed 0.25 s.
    lim = Limiter(url, prefix, "allow", LimiterTuning(timeout=10))
    await lim.start()
    for i, (cfg, prompt) in enumerate(races):
        print("ready", flush=True)
        sys.stdin.readline()
        aws = (lim.admit(f"shared-{i}", Limits(**cfg), prompt) for _ in range(n))
        rs = await asyncio.gather(*aws, return_exceptions=True)
        bad = [repr(x) for x in rs if not isinstance(x, (Admission, GatewayError))]
        admitted = sum(isinstance(x, Admission) for x in rs)
        print(json.dumps({"admitted": admitted, "bad": bad, "failures": lim.redis_failures}), flush=True)
    await lim.close()

asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])))
"""


@pytest.mark.skipif(not REDIS_UP, reason="no Redis")
def test_two_processes_admit_exactly_the_limit(clean_prefix: str) -> None:
    races = [({"rpm": 25}, 1, 25), ({"tpm": 1000}, 10, 100), ({"tokens_per_day": 500}, 10, 50)]
    spec = json.dumps([[cfg, prompt] for cfg, prompt, _ in races])
    argv = [sys.executable, "-c", _CHILD, REDIS_URL, clean_prefix, spec, "80"]
    procs = [subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT) for _ in range(2)]
    try:
        for cfg, _, expected in races:
            for p in procs:  # both ready before either starts: a real race
                assert p.stdout is not None and p.stdout.readline() == b"ready\n"  # b"" if it died
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(b"go\n")
                p.stdin.flush()
            results = [json.loads(p.stdout.readline()) for p in procs if p.stdout is not None]
            assert [(r["bad"], r["failures"]) for r in results] == [([], 0), ([], 0)]
            assert sum(r["admitted"] for r in results) == expected, cfg
        for p in procs:
            p.communicate(timeout=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)


@pytest.mark.skipif(not REDIS_UP, reason="no Redis")
def test_two_limiters_in_one_process_share_the_limit(clean_prefix: str) -> None:
    async def go() -> int:
        async with (
            limiter(REDIS_URL, clean_prefix, timeout=10) as a,
            limiter(REDIS_URL, clean_prefix, timeout=10) as b,
        ):
            cfg = Limits(rpm=30, tpm=10_000)
            rs = await asyncio.gather(
                *(lim.admit("k", cfg, 3) for lim in (a, b) for _ in range(40)), return_exceptions=True
            )
        return sum(isinstance(x, Admission) for x in rs)

    assert run(go()) == 30


@pytest.fixture
def own_redis() -> Iterator[tuple[int, Callable[[], None], Callable[[], None]]]:
    """A private redis-server: (port, start, stop); never the shared one."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        p = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(p)
        c = redis.Redis(port=port, socket_connect_timeout=0.2)
        for _ in range(100):  # bounded: up to ~5 s
            try:
                if c.ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop() -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=10)

    yield port, start, stop
    stop()


@pytest.mark.parametrize("when_down", ["allow", "deny"])
def test_redis_down_allow_or_deny_then_recovers(own_redis: Any, when_down: str) -> None:
    port, start, stop = own_redis
    start()
    cfg = Limits(rpm=100)
    calls: list[int] = []

    async def go() -> None:
        async with limiter(
            f"redis://127.0.0.1:{port}/0", "t:", when_down, cooldown=0, on_failure=lambda: calls.append(1)
        ) as lim:
            assert hdr(await lim.admit("k", cfg, 1))["x-ratelimit-remaining-requests"] == "99"
            stop()
            t0 = time.monotonic()
            if when_down == "allow":
                a = await lim.admit("k", cfg, 1)
                assert a.headers == []
                lim.settle(a, 10)  # nothing to reconcile, nothing raised
            else:
                e = await refused(lim, "k", cfg, 1)
                assert (e.status, e.code) == (503, "limits_unavailable")
                assert int(e.headers["retry-after"]) >= 1
            assert time.monotonic() - t0 < 2.0  # loose: the timeout is 0.25 s
            assert lim.redis_failures == 1 and calls == [1]
            start()
            # Back: counting resumes (the first admission's state died with the server).
            assert hdr(await lim.admit("k", cfg, 1))["x-ratelimit-remaining-requests"] == "99"
            assert lim.redis_failures == 1

    run(go())


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP listener that accepts connections (kernel backlog) and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    yield s.getsockname()[1]
    s.close()


@pytest.mark.parametrize("when_down", ["allow", "deny"])
def test_silent_redis_times_out_and_cools_down(silent_port: int, when_down: str) -> None:
    cfg = Limits(rpm=5, tpm=100)

    async def go() -> None:
        async with limiter(f"redis://127.0.0.1:{silent_port}/0", "t:", when_down, timeout=0.2, cooldown=30) as lim:
            for _ in range(3):  # the first waits for the timeout; the rest skip Redis during the cooldown
                t0 = time.monotonic()
                if when_down == "allow":
                    assert (await lim.admit("k", cfg, 1)) is EMPTY
                else:
                    assert (await refused(lim, "k", cfg, 1)).status == 503
                assert time.monotonic() - t0 < 1.5  # loose: the timeout is 0.2 s
            assert lim.redis_failures == 1

    run(go())


def test_settlements_are_bounded_and_counted(monkeypatch: pytest.MonkeyPatch, silent_port: int) -> None:
    monkeypatch.setattr(limits_mod, "SETTLE_QUEUE", 2)

    async def go() -> None:
        lim = Limiter(f"redis://127.0.0.1:{silent_port}/0", "t:", "allow", LimiterTuning(timeout=0.1, cooldown=0))
        # Not started: nothing drains the queue, so the third settlement finds it full.
        for i in range(3):
            lim.settle(Admission([], "k", charged=1, tpm=True), 5 + i)
        assert lim.settle_dropped == 1
        await lim.start()  # its script load times out: one failure
        assert await lim.flush(3.0)  # the silent Redis fails the batch too: dropped and counted
        assert lim.settle_dropped == 3 and lim.redis_failures == 2
        await lim.close()

    run(go())


def test_limits_on_a_redis_cluster(cluster) -> None:
    """Against a real 3-node cluster: the cluster client is used and rpm holds exactly."""

    async def run() -> tuple[int, bool]:
        lim = Limiter(cluster[0].url, f"clu{os.getpid()}:", "deny", LimiterTuning(timeout=2.0))
        await lim.start()
        try:
            ok = 0
            for i in range(12):
                try:
                    await lim.admit(f"team-{i % 3}", Limits(rpm=2), 1)
                    ok += 1
                except GatewayError as e:
                    assert e.status == 429, e.message
            return ok, type(lim._redis).__name__ == "RedisCluster"
        finally:
            await lim.close()

    ok, is_cluster = asyncio.run(run())
    assert is_cluster and ok == 6  # 2 per key, 3 keys spread over the cluster's slots
