"""Per-key limits (gateway/pipeline/limits/): the formats, and the semantics in memory.

tests/e2e/test_limits_redis.py runs the same semantics tests in a real Redis (``mode`` "redis"), and
the Redis specifics: key layout, two processes, Redis down or silent, a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from gateway.config import Limits
from gateway.errors import GatewayError
from gateway.pipeline.limits import EMPTY, Admission, Limiter, LimiterTuning, format_duration, retry_after
from tests.support import free_port
from tests.support.redis import REDIS_URL

DURATION = re.compile(r"^(\d+ms|(\d+h)?(\d+m)?\d+(\.\d+)?s)$")


@pytest.fixture(params=["memory"])
def mode(request: pytest.FixtureRequest) -> str:
    """Where the limiter keeps its counts: in memory here, in Redis in tests/e2e/test_limits_redis.py."""
    return request.param


@pytest.fixture
def clean_prefix() -> str:
    """A key prefix of the test's own (in Redis, tests/e2e/test_limits_redis.py deletes its keys afterwards)."""
    return f"sytest:{uuid.uuid4().hex[:12]}:"


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


@asynccontextmanager
async def limiter(
    url: str, prefix: str, when_down: str = "allow", on_failure: Any = None, **tuning: Any
) -> AsyncIterator[Limiter]:
    lim = Limiter(url, prefix, when_down, LimiterTuning(**tuning), on_failure=on_failure)
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
