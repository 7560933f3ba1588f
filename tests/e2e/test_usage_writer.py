"""The usage writer against a real Redis: an outage, a hung server, a lost reply."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis

from gateway.accounting.usage.writer import UsageWriter
from tests.support.redis import REDIS_URL, RedisProcess, ReplyDropProxy, SilentListener, log_entries, store_for
from tests.support.usage import DAY, make_record
from tests.unit.gateway.test_usage_writer import ids, until, writer_for


def test_redis_outage_loses_nothing_and_writes_once(tmp_path: Path, redis_prefix: str) -> None:
    server = RedisProcess(tmp_path).start()
    try:
        store = store_for(server.url, redis_prefix, socket_timeout=0.5, connect_timeout=0.5)

        async def run() -> UsageWriter:
            w = writer_for(store, batch_size=5)
            w.start()
            for i in range(20):
                w.submit(make_record(i))
            assert await until(lambda: w.buffered == 0)
            await asyncio.to_thread(server.stop)
            for i in range(20, 60):
                w.submit(make_record(i))  # during the outage: still instant
            assert await until(lambda: w.reachable is False)
            assert w.buffered == 40
            await asyncio.to_thread(server.start)  # same port
            for i in range(60, 70):
                w.submit(make_record(i))
            assert await until(lambda: w.buffered == 0, timeout=10)
            await w.close()
            await store.close()
            return w

        w = asyncio.run(run())
        r = server.client()
        # The restarted server starts empty: everything submitted after the stop must be there, once.
        assert r.hget(f"{redis_prefix}usage:team-a:{DAY}", "requests") == "50"
        assert sorted(e["id"] for e in log_entries(r, redis_prefix)) == ids(50, 20)
        assert w.dropped == 0 and w.reachable is True
        r.close()
    finally:
        server.stop()


def test_a_hung_redis_does_not_block_submit(redis_prefix: str) -> None:
    with SilentListener() as silent:
        store = store_for(silent.url, redis_prefix, socket_timeout=0.2, connect_timeout=0.2)

        async def run() -> UsageWriter:
            w = writer_for(store, write_timeout=1)
            w.start()
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            ticks = 0
            for i in range(200):
                w.submit(make_record(i))
                if i % 20 == 0:
                    await asyncio.sleep(0)  # the event loop stays responsive
                    ticks += 1
            assert ticks == 10 and loop.time() - t0 < 5  # generous: submit never waits on Redis
            assert await until(lambda: w.reachable is False)
            assert w.buffered == 200
            await w.close(timeout=0.3)
            await store.close()
            return w

        w = asyncio.run(run())
    assert w.dropped == 200  # counted, and logged, at shutdown


def test_lost_reply_through_the_writer_counts_once(
    shared_redis: redis.Redis,
    redis_prefix: str,
) -> None:
    port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    with ReplyDropProxy(port) as proxy:
        store = store_for(proxy.url, redis_prefix, socket_timeout=0.3)

        async def run() -> None:
            await store.client()
            w = writer_for(store, batch_size=100)
            w.start()
            proxy.swallow = True
            for i in range(8):
                w.submit(make_record(i))
            assert await until(lambda: w.reachable is False)  # the reply was swallowed: a timeout
            proxy.swallow = False
            assert await until(lambda: w.buffered == 0)
            await w.close()
            await store.close()

        asyncio.run(run())
    assert shared_redis.hget(f"{redis_prefix}usage:team-a:{DAY}", "requests") == "8"
    assert sorted(e["id"] for e in log_entries(shared_redis, redis_prefix)) == ids(8)
