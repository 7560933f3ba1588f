"""Money budgets in the limiter (gateway/pipeline/limits/, budgets.py): reserve, refuse, settle,
UTC day and month windows, the same in memory and in a real Redis; and what a request reserves."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from gateway.apis import ENDPOINTS
from gateway.config import BudgetUSD, Limits, parse_config
from gateway.errors import GatewayError
from gateway.pipeline.budgets import reservation
from gateway.pipeline.limits import CALENDAR_LUA, EMPTY, Admission, Limiter, month_of
from gateway.pipeline.routing import Router
from tests.e2e.test_limits_redis import REDIS_UP
from tests.support.redis import REDIS_URL
from tests.support.servers import free_port
from tests.unit.gateway.test_limits import DURATION, limiter, run, url_for


@pytest.fixture(params=["memory", "redis"])
def mode(request: pytest.FixtureRequest) -> str:
    """Budgets behave the same in memory and in Redis."""
    if request.param == "redis" and not REDIS_UP:
        pytest.skip("no Redis at " + REDIS_URL)
    return request.param


@pytest.fixture
def clean_prefix(redis_prefix: str) -> str:
    return redis_prefix


DAY_MS = 86_400_000


def budget(day: Any = None, month: Any = None, **kw: Any) -> Limits:
    return Limits(budget_usd=BudgetUSD(day=day, month=month), **kw)


def hdr(a: Admission) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in a.headers}


async def refused(lim: Limiter, key: str, limits: Limits, cost: int, prompt: int = 10) -> GatewayError:
    with pytest.raises(GatewayError) as ei:
        await lim.admit(key, limits, prompt, cost)
    return ei.value


def secs_to_utc_midnight() -> float:
    now = time.time()
    return 86_400 - now % 86_400


def test_reserve_then_settle_with_budget_headers(mode: str, clean_prefix: str) -> None:
    cfg = budget(day=1)  # $1 = 1,000,000 micro-dollars

    async def go() -> None:
        async with limiter(url_for(mode), clean_prefix) as lim:
            a = await lim.admit("k", cfg, 10, 300_000)
            h = hdr(a)
            assert h["x-ratelimit-limit-budget"] == "1"
            assert h["x-ratelimit-remaining-budget"] == "0.7"  # counts this request's reservation
            assert DURATION.match(h["x-ratelimit-reset-budget"])
            assert (a.budget, a.reserved) == (True, 300_000)
            lim.settle(a, 0, 120_000)  # it cost less: 180,000 back
            lim.settle(a, 0, 999_999)  # a second settle is ignored
            assert await lim.flush()
            b = await lim.admit("k", cfg, 10, 500_000)
            assert hdr(b)["x-ratelimit-remaining-budget"] == "0.38"  # 1 - 0.12 - 0.5
            lim.settle(b, 0, 650_000)  # it cost more than reserved: the excess is charged
            assert await lim.flush()
            c = await lim.admit("k", cfg, 10, 0)
            assert hdr(c)["x-ratelimit-remaining-budget"] == "0.23"
            lim.settle(c, 0, 0)
            assert await lim.flush()

    run(go())


def test_beyond_the_budget_is_429_insufficient_quota_until_utc_midnight(mode: str, clean_prefix: str) -> None:
    cfg = budget(day="0.5")

    async def go() -> None:
        async with limiter(url_for(mode), clean_prefix) as lim:
            await lim.admit("k", cfg, 10, 400_000)
            e = await refused(lim, "k", cfg, 200_000)
            assert (e.status, e.type, e.code) == (429, "insufficient_quota", "insufficient_quota")
            assert re.fullmatch(
                r"You exceeded your current quota: key 'k' has spent or reserved \$0\.4 of its \$0\.5 budget "
                r"per day \(UTC\), and this request may cost up to \$0\.2\. The budget resets in \S+\.",
                e.message,
            ), e.message
            assert abs(int(e.headers["retry-after"]) - secs_to_utc_midnight()) <= 2
            assert e.headers["x-ratelimit-remaining-budget"] == "0.1"
            # What still fits passes; a request whose price is unknown needs one micro-dollar of room.
            await lim.admit("k", cfg, 10, 100_000)
            e = await refused(lim, "k", cfg, 0)
            assert e.code == "insufficient_quota"
            # Another key is untouched.
            assert hdr(await lim.admit("other", cfg, 10, 1))["x-ratelimit-remaining-budget"] == "0.499999"

    run(go())


def test_a_reservation_larger_than_the_budget_can_never_pass(mode: str, clean_prefix: str) -> None:
    async def go() -> None:
        async with limiter(url_for(mode), clean_prefix) as lim:
            e = await refused(lim, "k", budget(day=1), 1_500_000)
            assert e.code == "insufficient_quota"
            assert e.message.startswith("Request too large for the budget of key 'k': Limit $1 per day (UTC)")
            assert "Lower max_tokens" in e.message

    run(go())


def test_the_month_window_and_the_tighter_window_in_headers(mode: str, clean_prefix: str) -> None:
    async def go() -> None:
        async with limiter(url_for(mode), clean_prefix) as lim:
            both = budget(day=10, month="0.5")
            h = hdr(await lim.admit("k", both, 10, 100_000))
            assert (h["x-ratelimit-limit-budget"], h["x-ratelimit-remaining-budget"]) == ("0.5", "0.4")  # month binds
            e = await refused(lim, "k", both, 450_000)
            assert "budget per month (UTC)" in e.message
            now = dt.datetime.now(dt.UTC)
            first = dt.datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=dt.UTC)
            assert abs(int(e.headers["retry-after"]) - (first - now).total_seconds()) <= 2
            # The day window counted the same spend: with only a day budget of 0.15, 0.1 is used.
            h = hdr(await lim.admit("k", budget(day="0.15"), 10, 10_000))
            assert h["x-ratelimit-remaining-budget"] == "0.04"

    run(go())


def test_concurrent_admissions_never_reserve_beyond_the_budget(mode: str, clean_prefix: str) -> None:
    cfg = budget(day=1)

    async def go() -> None:
        async with limiter(url_for(mode), clean_prefix) as lim:

            async def one() -> Admission | None:
                try:
                    return await lim.admit("k", cfg, 10, 70_000)
                except GatewayError as e:
                    assert e.code == "insufficient_quota"
                    return None

            got = await asyncio.gather(*(one() for _ in range(50)))
            assert sum(1 for a in got if a is not None) == 14  # floor(1 / 0.07)

    run(go())


def test_budgets_combine_with_rate_limits_in_one_admission(mode: str, clean_prefix: str) -> None:
    cfg = budget(day=1, rpm=2, tpm=1000)

    async def go() -> None:
        async with limiter(url_for(mode), clean_prefix) as lim:
            h = hdr(await lim.admit("k", cfg, 10, 1))
            assert {"x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens"} <= set(h)
            assert h["x-ratelimit-remaining-budget"] == "0.999999"
            await lim.admit("k", cfg, 10, 1)
            e = await refused(lim, "k", cfg, 1)
            assert e.code == "rate_limit_exceeded"  # the request limit, not the budget
            # A refused request reserved nothing.
            h = hdr(await lim.admit("k2", cfg, 10, 1))
            assert h["x-ratelimit-remaining-budget"] == "0.999999"

    run(go())


def test_a_subject_other_than_a_key_is_named_in_refusals(mode: str, clean_prefix: str) -> None:
    async def go() -> None:
        async with limiter(url_for(mode), clean_prefix) as lim:
            with pytest.raises(GatewayError) as ei:
                await lim.admit("payments", budget(day=1), 10, 2_000_000, what="team")
            assert "budget of team 'payments'" in ei.value.message

    run(go())


def test_redis_down_follows_limits_when_redis_down() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"

    async def go() -> None:
        async with limiter(dead, "x:", "allow") as lim:
            assert await lim.admit("k", budget(day=1), 10, 5_000_000) is EMPTY  # allowed, unreserved
        async with limiter(dead, "x:", "deny") as lim:
            with pytest.raises(GatewayError) as ei:
                await lim.admit("k", budget(day=1), 10, 1)
            assert (ei.value.status, ei.value.code) == (503, "limits_unavailable")

    run(go())


def test_budget_state_lives_in_the_subjects_hash_slot(clean_prefix: str) -> None:
    lim = Limiter("", clean_prefix, "allow")
    keys = lim._keys("team-a")
    assert keys[3] == f"{clean_prefix}rl:{{team-a}}:bud"
    assert len({key_slot(k.encode()) for k in keys}) == 1  # one Lua script, Redis Cluster safe


@pytest.mark.skipif(not REDIS_UP, reason="no Redis")
def test_the_lua_calendar_matches_python_over_four_centuries_of_month_ends() -> None:
    days = list(range(-800, 800)) + list(range(10_950, 11_400)) + [20_454, 20_455, 47_540, 47_541, 146_096]
    r = redis.Redis.from_url(REDIS_URL)
    script = (
        CALENDAR_LUA
        + """
local out = {}
for i = 1, #ARGV do
  local m, e = month_of(tonumber(ARGV[i]))
  out[#out + 1] = m
  out[#out + 1] = e
end
return out
"""
    )
    got = r.eval(script, 0, *days)
    r.close()
    for i, day in enumerate(days):
        assert (got[2 * i], got[2 * i + 1]) == month_of(day), day
    # Python's own view of the same days, for the record: 2026-02-28 is in month 2026*12+1, March 1st next.
    feb28 = (dt.date(2026, 2, 28) - dt.date(1970, 1, 1)).days
    assert month_of(feb28) == (2026 * 12 + 1, feb28 + 1)
    dec31 = (dt.date(2026, 12, 31) - dt.date(1970, 1, 1)).days
    assert month_of(dec31) == (2026 * 12 + 11, dec31 + 1)


# -- what a request reserves ---------------------------------------------------------------------
EP = {e.name: e for e in ENDPOINTS}


def _route(models: list[dict[str, Any]], name: str) -> Any:
    cfg = parse_config(
        {
            "keys": [{"name": "k", "key": "sk-k"}],
            "providers": {
                "openai": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"},
                "anthropic": {"kind": "anthropic"},
                "mock": {"kind": "mock"},
            },
            "models": models,
        },
        env={},
    )
    return Router(cfg).resolve(name)


def test_the_reservation_is_the_prompt_at_input_plus_the_completion_budget_at_output() -> None:
    route = _route([], "openai/gpt-4o-mini")  # 0.15 in, 0.60 out
    chat = EP["chat"]
    # 1,000 prompt x 0.15 + 500 x 0.6 = 150 + 300 micro-dollars
    assert reservation(chat, {"max_tokens": 500}, route, 1_000) == 450
    assert reservation(chat, {"max_completion_tokens": 100, "max_tokens": 500}, route, 1_000) == 210
    assert reservation(chat, {"max_tokens": 500, "n": 3}, route, 1_000) == 150 + 900  # every choice is billed
    # No budget from the client: the model's output limit (16,384) is the most it can write.
    assert reservation(chat, {}, route, 1_000) == 150 + 16_384 * 6 // 10 + 1  # rounded up
    assert reservation(EP["embeddings"], {"max_tokens": 500}, _route([], "openai/text-embedding-3-small"), 1_000) == 20
    assert reservation(EP["responses"], {"max_output_tokens": 10}, route, 0) == 6
    assert reservation(EP["completions"], {"max_tokens": 10, "n": 2, "best_of": 4}, route, 0) == 24


def test_the_reservation_takes_the_dearest_deployment_and_cache_writes() -> None:
    route = _route(
        [
            {
                "name": "smart",
                "deployments": [
                    {"provider": "openai", "upstream": "gpt-4o-mini"},
                    {"provider": "anthropic", "upstream": "claude-sonnet-4-5"},
                ],
            }
        ],
        "smart",
    )
    # Claude: every prompt token at the cache-write price (3.75), the completion at 15.
    assert reservation(EP["chat"], {"max_tokens": 100}, route, 1_000) == 3_750 + 1_500


def test_an_unpriced_route_reserves_nothing() -> None:
    assert reservation(EP["chat"], {"max_tokens": 100}, _route([], "mock/echo"), 1_000) == 0


# -- the config ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("budget", "problem"),
    [
        ({"day": 0}, "keys.0.limits.budget_usd.day: must be greater than 0"),
        ({"month": -5}, "keys.0.limits.budget_usd.month: must be greater than 0"),
        ({"day": "0.0000001"}, "keys.0.limits.budget_usd.day: at most 6 decimal places (USD)"),
        ({"day": "lots"}, "keys.0.limits.budget_usd.day: must be a number"),
        ({}, "keys.0.limits.budget_usd: give 'day', 'month' or both"),
        ({"week": 1}, "keys.0.limits.budget_usd.week: unknown field (check the spelling)"),
    ],
)
def test_budget_config_problems_are_named(budget: dict[str, Any], problem: str) -> None:
    from gateway.config import ConfigError

    cfg = {
        "keys": [{"name": "k", "key": "sk-k", "limits": {"budget_usd": budget}}],
        "providers": {"m": {"kind": "mock"}},
    }
    with pytest.raises(ConfigError) as ei:
        parse_config(cfg, "c.yaml", env={})
    assert f"c.yaml: {problem}" in ei.value.problems


def test_a_budget_in_the_config() -> None:
    cfg = parse_config(
        {
            "keys": [{"name": "k", "key": "sk-k", "limits": {"budget_usd": {"day": 10, "month": "250.5"}}}],
            "providers": {"m": {"kind": "mock"}},
        },
        env={},
    )
    from gateway.pipeline.limits import budget_micro, has_limits

    assert budget_micro(cfg.keys[0].limits) == (10_000_000, 250_500_000)
    assert has_limits(cfg.keys[0].limits)
