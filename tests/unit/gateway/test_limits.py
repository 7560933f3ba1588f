"""Per-key limits (gateway/limits.py): the same semantics in memory and in a real Redis.

Redis tests use the shared server at ``REDIS_URL`` with a per-test prefix; tests that stop or
break Redis start their own ``redis-server`` (or a silent TCP listener) on a free port.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from gateway.config import Limits
from gateway.errors import GatewayError
from gateway.pipeline import limits as limits_mod
from gateway.pipeline.limits import EMPTY, Admission, Limiter, format_duration, retry_after
from tests.e2e.conftest import cluster  # noqa: F401  (a real 3-node Redis Cluster fixture)
from tests.support import ROOT
from tests.support.redis import REDIS_URL
from tests.support.servers import free_port

MODES = ["memory", "redis"]
DURATION = re.compile(r"^(\d+ms|(\d+h)?(\d+m)?\d+(\.\d+)?s)$")


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


REDIS_UP = _redis_up()


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    if request.param == "redis" and not REDIS_UP:
        pytest.skip("no Redis at " + REDIS_URL)
    return request.param


@pytest.fixture
def clean_prefix(redis_prefix: str) -> Iterator[str]:
    """``redis_prefix``, with its keys deleted afterwards (they would expire anyway)."""
    yield redis_prefix
    if REDIS_UP:
        r = redis.Redis.from_url(REDIS_URL)
        for k in r.scan_iter(match=redis_prefix + "*", count=1000):
            r.delete(k)


@asynccontextmanager
async def limiter(url: str, prefix: str, when_down: str = "allow", **kw: Any) -> AsyncIterator[Limiter]:
    lim = Limiter(url, prefix, when_down, **kw)
    await lim.start()
    try:
        yield lim
    finally:
        await lim.close()


def url_for(mode: str) -> str:
    return REDIS_URL if mode == "redis" else ""


async def refused(lim: Limiter, key: str, limits: Limits, prompt: int) -> GatewayError:
    with pytest.raises(GatewayError) as ei:
        await lim.admit(key, limits, prompt)
    return ei.value


def hdr(a: Admission) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in a.headers}


# -- formats ----------------------------------------------------------------------------------------


# Samples from https://platform.openai.com/docs/guides/rate-limits#rate-limits-in-headers
# (x-ratelimit-reset-requests "1s", x-ratelimit-reset-tokens "6m0s"); "12ms" is a live header quoted at
# https://community.openai.com/t/how-to-get-rate-limit-reset-time-for-response-api/1268905 and
# "14h29m11.04s" a live 429 message quoted at
# https://community.openai.com/t/error-code-429-rate-limit-differs-from-documentation/1066011
@pytest.mark.parametrize(
    ("ms", "text"),
    [(1000, "1s"), (360_000, "6m0s"), (12, "12ms"), (52_151_040, "14h29m11.04s"), (0, "0s"), (120, "120ms")],
)
def test_openai_duration_format(ms: int, text: str) -> None:
    assert format_duration(ms) == text


@pytest.mark.parametrize(
    ("ms", "text"), [(1500, "1.5s"), (59_999, "59.999s"), (3_600_000, "1h0m0s"), (0.2, "1ms"), (-5, "0s")]
)
def test_duration_edges(ms: float, text: str) -> None:
    assert format_duration(ms) == text


@pytest.mark.parametrize(("ms", "secs"), [(0, 1), (1, 1), (1000, 1), (1001, 2), (59_500, 60), (-3, 1)])
def test_retry_after_is_whole_seconds_at_least_one(ms: int, secs: int) -> None:
    assert retry_after(ms) == secs


def test_no_limits_is_free_and_never_touches_redis() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"

    async def go() -> None:
        async with limiter(dead, "x:", "deny") as lim:
            before = lim.redis_failures  # start() already tried to load the scripts
            a = await lim.admit("k", Limits(), 10_000)
            assert a is EMPTY and a.headers == []
            lim.settle(a, 99)
            assert lim.redis_failures == before

    run(go())


# -- semantics, in memory and in Redis ----------------------------------------------------------------


# The 429 body as OpenAI words it, e.g. "Rate limit reached for gpt-4o-mini in organization org-... on
# requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s." with type "requests"
# (quoted from live answers at https://community.openai.com/t/error-code-429-rate-limit-differs-from-documentation/1066011
# and https://help.openai.com/en/articles/6891829-error-code-429-rate-limit-reached-for-requests).
def test_rpm_exact_with_openai_headers_and_body(mode: str, clean_prefix: str) -> None:
    lim_cfg = Limits(rpm=3)

    async def go() -> None:
        async with limiter(url_for(mode), clean_prefix) as lim:
            for left in (2, 1, 0):
                h = hdr(await lim.admit("team-a", lim_cfg, 5))
                assert h["x-ratelimit-limit-requests"] == "3"
                assert h["x-ratelimit-remaining-requests"] == str(left)  # counts this request
                assert DURATION.match(h["x-ratelimit-reset-requests"])
                assert "x-ratelimit-limit-tokens" not in h  # no tpm configured
            e = await refused(lim, "team-a", lim_cfg, 5)
            assert (e.status, e.type, e.code) == (429, "requests", "rate_limit_exceeded")
            assert re.fullmatch(
                r"Rate limit reached for key 'team-a' on requests per min \(RPM\): Limit 3, Used 3, "
                r"Requested 1\. Please try again in \S+\.",
                e.message,
            )
            ra = int(e.headers["retry-after"])
            assert 1 <= ra <= 60
            assert e.headers["x-ratelimit-remaining-requests"] == "0"
            assert DURATION.match(e.headers["x-ratelimit-reset-requests"])
            # Another key is untouched.
            assert hdr(await lim.admit("team-b", lim_cfg, 5))["x-ratelimit-remaining-requests"] == "2"

    run(go())


def test_tpm_charges_estimate_then_reconciles(mode: str, clean_prefix: str) -> None:
    cfg = Limits(tpm=100)

    async def go() -> None:
        async with limiter(url_for(mode), clean_prefix) as lim:
            a = await lim.admit("k", cfg, 30)
            h = hdr(a)
            assert (h["x-ratelimit-limit-tokens"], h["x-ratelimit-remaining-tokens"]) == ("100", "70")
            assert "x-ratelimit-limit-requests" not in h
            assert DURATION.match(h["x-ratelimit-reset-tokens"])
            lim.settle(a, 50)  # +20 real
            lim.settle(a, 50)  # a second settle is ignored
            assert await lim.flush()
            b = await lim.admit("k", cfg, 10)
            assert hdr(b)["x-ratelimit-remaining-tokens"] == "40"  # 100 - 50 - 10
            lim.settle(b, 4)  # -6: refunded
            assert await lim.flush()
            c = await lim.admit("k", cfg, 0)
            assert hdr(c)["x-ratelimit-remaining-tokens"] == "46"
            e = await refused(lim, "k", cfg, 47)
            assert (e.status, e.type, e.code) == (429, "tokens", "rate_limit_exceeded")
            assert re.fullmatch(
                r"Rate limit reached for key 'k' on tokens per min \(TPM\): Limit 100, Used 54, "
                r"Requested 47\. Please try again in \S+\.",
                e.message,
            )
            assert 1 <= int(e.headers["retry-after"]) <= 61  # a charge counts at most one bucket past 60 s
            assert e.headers["x-ratelimit-remaining-tokens"] == "46"
            assert hdr(await lim.admit("k", cfg, 46))["x-ratelimit-remaining-tokens"] == "0"
            # Full: even a request whose estimate is 0 must wait.
            assert (await refused(lim, "k", cfg, 0)).status == 429

    run(go())


# OpenAI's wording for a request that can never fit ("Request too large for gpt-4o ... on tokens per min
# (TPM): Limit 30000, Requested 38324. The input or output tokens must be reduced in order to run
# successfully.", type "tokens"), as quoted from live answers in
# https://github.com/openai/openai-python/issues and https://community.openai.com threads.
def test_request_larger_than_tpm_says_so(mode: str, clean_prefix: str) -> None:
    async def go() -> None:
        async with limiter(url_for(mode), clean_prefix) as lim:
            e = await refused(lim, "k", Limits(rpm=10, tpm=100), 101)
            assert e.type == "tokens" and e.code == "rate_limit_exceeded"
            assert e.message.startswith(
                "Request too large for key 'k' on tokens per min (TPM): Limit 100, Requested 101."
            )
            assert int(e.headers["retry-after"]) >= 1
            # Nothing was charged by the refusal.
            assert hdr(await lim.admit("k", Limits(rpm=10, tpm=100), 100))["x-ratelimit-remaining-requests"] == "9"

    run(go())


def test_tokens_per_day_budget(mode: str, clean_prefix: str) -> None:
    cfg = Limits(tokens_per_day=100)

    async def go() -> None:
        async with limiter(url_for(mode), clean_prefix) as lim:
            a = await lim.admit("k", cfg, 40)
            assert a.headers == []  # OpenAI's headers describe rpm/tpm only
            lim.settle(a, 90)  # real total 90 -> 90 used today
            assert await lim.flush()
            b = await lim.admit("k", cfg, 10)  # 90 + 10 <= 100
            e = await refused(lim, "k", cfg, 1)
            assert e.type == "tokens"
            assert re.fullmatch(
                r"Rate limit reached for key 'k' on tokens per day \(TPD\): Limit 100, Used 100, "
                r"Requested 1\. Please try again in \S+\.",
                e.message,
            )
            now = time.time()
            to_midnight = math.ceil((math.floor(now / 86400) + 1) * 86400 - now)
            assert 1 <= int(e.headers["retry-after"]) <= to_midnight + 2
            lim.settle(b, 5)  # 5 refunded
            assert await lim.flush()
            await lim.admit("k", cfg, 5)
            assert (await refused(lim, "k", cfg, 1)).status == 429
            big = await refused(lim, "other", cfg, 101)
            assert big.message.startswith("Request too large for key 'other' on tokens per day (TPD)")

    run(go())


def test_longest_wait_is_reported(mode: str, clean_prefix: str) -> None:
    if 86400 - time.time() % 86400 < 120:
        pytest.skip("too close to UTC midnight: the day would outlast nothing")
    cfg = Limits(rpm=1, tokens_per_day=10)

    async def go() -> None:
        async with limiter(url_for(mode), clean_prefix) as lim:
            await lim.admit("k", cfg, 10)
            e = await refused(lim, "k", cfg, 1)  # both exceeded: the day outlasts the minute
            assert "tokens per day" in e.message
            assert e.headers["x-ratelimit-remaining-requests"] == "0"

    run(go())


def test_window_rolls(mode: str, clean_prefix: str) -> None:
    cfg = Limits(rpm=2, tpm=50)

    async def go() -> None:
        async with limiter(url_for(mode), clean_prefix, window=0.6) as lim:
            for _ in range(2):
                await lim.admit("k", cfg, 20)
            e = await refused(lim, "k", cfg, 1)
            assert e.type == "requests"
            assert int(e.headers["retry-after"]) == 1
            # Everything above counts for at most 0.6 s plus one 10 ms bucket.
            await asyncio.sleep(0.75)
            h = hdr(await lim.admit("k", cfg, 20))
            assert h["x-ratelimit-remaining-requests"] == "1"
            assert h["x-ratelimit-remaining-tokens"] == "30"

    run(go())


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
from gateway.pipeline.limits import Admission, Limiter

async def main(url, prefix, races, n):
    # A generous timeout: this is about atomicity, and a cold burst on a busy box may exceed 0.25 s.
    lim = Limiter(url, prefix, "allow", timeout=10)
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


# -- Redis down or silent -----------------------------------------------------------------------------------


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
        lim = Limiter(f"redis://127.0.0.1:{silent_port}/0", "t:", "allow", timeout=0.1, cooldown=0)
        # Not started: nothing drains the queue, so the third settlement finds it full.
        for i in range(3):
            lim.settle(Admission([], "k", charged=1, tpm=True), 5 + i)
        assert lim.settle_dropped == 1
        await lim.start()  # its script load times out: one failure
        assert await lim.flush(3.0)  # the silent Redis fails the batch too: dropped and counted
        assert lim.settle_dropped == 3 and lim.redis_failures == 2
        await lim.close()

    run(go())


def test_limits_on_a_redis_cluster(cluster) -> None:  # noqa: F811  (the fixture from test_usage_redis)
    """Against a real 3-node cluster: the cluster client is used and rpm holds exactly."""

    async def run() -> tuple[int, bool]:
        lim = Limiter(cluster[0].url, f"clu{os.getpid()}:", "deny", timeout=2.0)
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
