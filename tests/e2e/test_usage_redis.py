"""The Redis usage store against real Redis: the contract's layout, idempotent replays, Cluster.

Tests that stop or break Redis run their own ``redis-server`` (``RedisProcess``) or a fake one
(``SilentListener``, ``ReplyDropProxy``); the shared server only ever sees this test's prefix.
The helpers are in tests/support/redis.py and tests/support/usage.py; ``shared_redis`` and ``cluster``
are fixtures of tests/e2e/conftest.py.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import pytest
import redis

from gateway.accounting.usage.record import UsageRecord
from gateway.accounting.usage.redis_store import GUARD_TTL, LOG_FIELDS, RedisStore, guard_key
from gateway.errors import GatewayError
from tests.support.redis import REDIS_URL, RedisProcess, ReplyDropProxy, log_entries, store_for
from tests.support.servers import free_port
from tests.support.usage import DAY, DAY_TS, make_record

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


async def write(store: RedisStore, batch_id: str, records: list[UsageRecord]) -> None:
    try:
        await store.write_batch(batch_id, records)
    finally:
        await store.close()


# -- the layout -----------------------------------------------------------------------------------
def test_batch_writes_the_contract_layout(shared_redis: redis.Redis, redis_prefix: str) -> None:
    records = [
        make_record(1, prompt=3, completion=5),
        make_record(
            2,
            model="openai/gpt-4o-mini",
            prompt=10,
            completion=20,
            stream=True,
            cost_micro_usd=1500,
            cache_read_tokens=4,
        ),
        make_record(3, status=400, prompt=0, completion=0),
        make_record(4, key="team-b", prompt=1, completion=1, estimated=True),
    ]
    asyncio.run(write(store_for(REDIS_URL, redis_prefix), "b1", records))

    assert shared_redis.hgetall(f"{redis_prefix}usage:team-a:{DAY}") == {
        "requests": "3",
        "errors": "1",
        "prompt_tokens": "13",
        "completion_tokens": "25",
        "total_tokens": "38",
        "cost_micro_usd": "1500",
        "mock/echo|requests": "2",
        "mock/echo|errors": "1",
        "mock/echo|prompt_tokens": "3",
        "mock/echo|completion_tokens": "5",
        "mock/echo|total_tokens": "8",
        "mock/echo|cost_micro_usd": "0",
        "openai/gpt-4o-mini|requests": "1",
        "openai/gpt-4o-mini|errors": "0",
        "openai/gpt-4o-mini|prompt_tokens": "10",
        "openai/gpt-4o-mini|completion_tokens": "20",
        "openai/gpt-4o-mini|total_tokens": "30",
        "openai/gpt-4o-mini|cost_micro_usd": "1500",
    }
    assert shared_redis.hget(f"{redis_prefix}usage:team-b:{DAY}", "total_tokens") == "2"
    entries = log_entries(shared_redis, redis_prefix)
    assert [e["id"] for e in entries] == ["req_1", "req_2", "req_3", "req_4"]
    assert entries[1] == {
        "id": "req_2",
        "ts": f"{DAY_TS:.3f}",
        "key": "team-a",
        "model": "openai/gpt-4o-mini",
        "provider": "openai",
        "endpoint": "/v1/chat/completions",
        "status": "200",
        "stream": "1",
        "prompt_tokens": "10",
        "completion_tokens": "20",
        "latency_ms": "12.3",
        "ttft_ms": "4.5",
        "estimated": "0",
        "cost_usd": "0.001500",
        "cache_read_tokens": "4",
        "cache_write_tokens": "0",
        "priced": "1",
    }
    assert entries[0]["stream"] == "0" and entries[0]["ttft_ms"] == ""
    assert entries[3]["estimated"] == "1"
    assert set(entries[0]) == set(LOG_FIELDS)


def test_records_fall_into_their_utc_day(shared_redis: redis.Redis, redis_prefix: str) -> None:
    records = [make_record(1, ts=DAY_TS), make_record(2, ts=DAY_TS + 86_400)]
    asyncio.run(write(store_for(REDIS_URL, redis_prefix), "b1", records))
    assert shared_redis.hget(f"{redis_prefix}usage:team-a:{DAY}", "requests") == "1"
    assert shared_redis.hget(f"{redis_prefix}usage:team-a:20250616", "requests") == "1"


def test_log_is_capped(shared_redis: redis.Redis, redis_prefix: str) -> None:
    store = store_for(REDIS_URL, redis_prefix, log_max_len=10)

    async def run() -> None:
        for b in range(6):
            await store.write_batch(f"b{b}", [make_record(b * 100 + i) for i in range(100)])
        await store.close()

    asyncio.run(run())
    # ``MAXLEN ~`` trims whole stream nodes (100 entries by default), so the length is approximate.
    assert shared_redis.xlen(f"{redis_prefix}log") <= 200
    assert shared_redis.hget(f"{redis_prefix}usage:team-a:{DAY}", "requests") == "600"


def test_reads_through_the_usage_answer_shape(shared_redis: redis.Redis, redis_prefix: str) -> None:
    store = store_for(REDIS_URL, redis_prefix)

    async def run() -> Any:
        await store.write_batch("b1", [make_record(1), make_record(2, model="x/y", status=500)])
        try:
            return await store.usage("team-a", DAY), await store.usage("nobody", DAY)
        finally:
            await store.close()

    (totals, models), (empty_totals, empty_models) = asyncio.run(run())
    assert totals == {
        "requests": 2,
        "errors": 1,
        "prompt_tokens": 6,
        "completion_tokens": 10,
        "total_tokens": 16,
        "cost_micro_usd": 0,
    }
    assert models["x/y"] == {
        "requests": 1,
        "errors": 1,
        "prompt_tokens": 3,
        "completion_tokens": 5,
        "total_tokens": 8,
        "cost_micro_usd": 0,
    }
    assert (empty_totals, empty_models) == ({}, {})


def test_unreachable_store_read_is_503(redis_prefix: str) -> None:
    store = store_for(f"redis://127.0.0.1:{free_port()}/0", redis_prefix, socket_timeout=0.5, connect_timeout=0.5)
    with pytest.raises(GatewayError) as e:
        asyncio.run(store.usage("team-a", DAY))
    assert e.value.status == 503 and e.value.code == "usage_store_unavailable"


# -- idempotency ----------------------------------------------------------------------------------
def test_replay_after_lost_reply_counts_once(shared_redis: redis.Redis, redis_prefix: str) -> None:
    """Redis applies the batch but the reply never arrives; the retry must not count it again."""
    host_port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    records = [make_record(i, stream=i % 2 == 0) for i in range(5)]
    with ReplyDropProxy(host_port) as proxy:
        store = store_for(proxy.url, redis_prefix, socket_timeout=0.3)

        async def run() -> None:
            await store.client()  # connect (and detect cluster or not) while replies still flow
            proxy.swallow = True
            with pytest.raises(redis.exceptions.TimeoutError):
                await store.write_batch("b-lost", records)
            # The write did land, as in a real lost reply.
            assert shared_redis.hget(f"{redis_prefix}usage:team-a:{DAY}", "requests") == "5"
            proxy.swallow = False
            await store.write_batch("b-lost", records)  # the writer's retry: same id, same records
            await store.close()

        asyncio.run(run())
    assert shared_redis.hget(f"{redis_prefix}usage:team-a:{DAY}", "requests") == "5"
    assert shared_redis.hget(f"{redis_prefix}usage:team-a:{DAY}", "completion_tokens") == "25"
    assert [e["id"] for e in log_entries(shared_redis, redis_prefix)] == [f"req_{i}" for i in range(5)]


def test_guards_are_deleted_once_confirmed(shared_redis: redis.Redis, redis_prefix: str) -> None:
    store = store_for(REDIS_URL, redis_prefix)
    g1 = guard_key(redis_prefix, f"{redis_prefix}usage:team-a:{DAY}", "b1")

    async def run() -> tuple[bool, int, bool]:
        await store.write_batch("b1", [make_record(1)])
        present, ttl = bool(shared_redis.exists(g1)), shared_redis.ttl(g1)
        await store.write_batch("b2", [make_record(2)])
        await store.close()
        return present, ttl, bool(shared_redis.exists(g1))

    present, ttl, after = asyncio.run(run())
    assert present and 0 < ttl <= GUARD_TTL  # a crash before the next round trip leaves it to expire
    assert not after  # confirmed guards go with the next round trip
    assert len(list(shared_redis.scan_iter(match=f"{redis_prefix}seen:*"))) == 2  # only b2's two units


# -- Redis Cluster (bonus: only where a small cluster can be created locally) ---------------------
def test_cluster_writes_without_crossslot_and_replays_once(cluster: list[RedisProcess]) -> None:
    prefix = "sy:"
    keys = [f"team-{i}" for i in range(12)]  # spread over the cluster's slots and nodes
    records = [make_record(i, key=keys[i % len(keys)], model=f"m/{i % 3}") for i in range(60)]
    store = store_for(cluster[0].url, prefix)

    async def run() -> tuple[dict[str, int], bool | None]:
        await store.write_batch("b1", records)
        await store.write_batch("b1", records)  # a replay of the same batch
        await store.write_batch("b2", [make_record(100, key="team-0")])
        totals, _ = await store.usage("team-0", DAY)
        await store.close()
        return totals, store.cluster

    totals, is_cluster = asyncio.run(run())
    assert is_cluster is True
    assert totals["requests"] == 6  # five from b1 (once) and one from b2
    rc = redis.RedisCluster(host="127.0.0.1", port=cluster[0].port, decode_responses=True)
    try:
        slots = {rc.keyslot(f"{prefix}usage:{k}:{DAY}") for k in keys}
        assert len(slots) > 1  # the test did cross slots
        for k in keys[1:]:
            assert rc.hget(f"{prefix}usage:{k}:{DAY}", "requests") == "5"
        assert rc.xlen(f"{prefix}log") == 61
    finally:
        rc.close()
