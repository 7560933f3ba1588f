"""The one Redis connection helper (gateway/wire/redis.py) against real servers: the shared Redis, a
private one that refuses ``INFO``, a local Redis Cluster, a Redis that never answers and a closed port.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import Redis, RedisCluster

from gateway.errors import GatewayError, store_unavailable
from gateway.wire.redis import ClientOptions, RedisHandle, connect, guarded
from tests.support import free_port
from tests.support.redis import REDIS_URL, RedisProcess, SilentListener

OPTS = ClientOptions(2.0, 1.0, retries=1, decode_responses=True)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_standalone_redis_gets_the_plain_client(shared_redis: redis.Redis, redis_prefix: str) -> None:
    async def go() -> None:
        h = RedisHandle(REDIS_URL, OPTS)
        r = await h.client()
        assert type(r) is Redis and h.cluster is False
        await r.set(f"{redis_prefix}wire", "1")
        assert await (await h.client()).get(f"{redis_prefix}wire") == "1"  # the same client, connected once
        assert await h.client() is r
        await h.close()
        again = await h.client()  # closed handles connect anew on demand
        assert again is not r and await again.ping()
        await h.close()

    run(go())


def test_info_refused_means_standalone(tmp_path: Path) -> None:
    """An ACL or a renamed command that refuses ``INFO`` is no reason to fail: only a cluster needs it."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisProcess(tmp_path, extra=("--rename-command", "INFO", "")).start()
    try:

        async def go() -> None:
            with pytest.raises(redis.ResponseError):
                await Redis.from_url(server.url).info("cluster")  # the server really refuses it
            r = await connect(server.url, OPTS)
            try:
                assert type(r) is Redis and await r.ping()
            finally:
                await r.aclose()

        run(go())
    finally:
        server.stop()


def test_a_cluster_node_gets_the_cluster_client(cluster: list[RedisProcess]) -> None:
    async def go() -> None:
        for opts in (OPTS, ClientOptions(0.5, 0.5, lean=True)):  # the usage store's and the limiter's
            h = RedisHandle(cluster[1].url, opts)
            r = await h.client()
            try:
                assert type(r) is RedisCluster and h.cluster is True
                names = [f"wire:{i}" for i in range(12)]  # spread over the three nodes' slots
                assert len({r.keyslot(n) * 3 // 16384 for n in names}) == 3
                for n in names:
                    await r.set(n, "v")
                assert [await r.get(n) for n in names] == ["v" if opts.decode_responses else b"v"] * 12
            finally:
                await h.close()

    run(go())


def test_concurrent_callers_share_one_attempt(shared_redis: redis.Redis) -> None:
    async def go() -> None:
        h = RedisHandle(REDIS_URL, OPTS)
        clients = await asyncio.gather(*(h.client() for _ in range(20)))
        try:
            assert all(c is clients[0] for c in clients)
        finally:
            await h.close()

    run(go())


def test_a_silent_redis_answers_each_caller_at_its_own_timeout() -> None:
    """Twenty callers of a Redis that never answers: one connection is made for all of them, and each
    gives up at its own timeout (not the client's 2 s socket timeout, nor after one another)."""
    with SilentListener() as silent:

        async def go() -> None:
            h = RedisHandle(silent.url, OPTS)

            async def caller(wait: float) -> float:
                t0 = time.monotonic()
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(wait):
                        await h.client()
                return time.monotonic() - t0

            took = await asyncio.gather(*(caller(0.3) for _ in range(19)), caller(0.6))
            assert all(t < 1.0 for t in took[:19]) and 0.55 < took[19] < 1.3, took
            await asyncio.sleep(0.1)
            assert len(silent._socks) == 1  # one shared attempt, still waiting on the socket
            await h.close()

        run(go())


def test_a_failure_nobody_waited_for_is_not_handed_to_the_next_caller() -> None:
    with SilentListener() as silent:

        async def go() -> None:
            h = RedisHandle(silent.url, ClientOptions(0.3, 0.3))
            for _ in range(2):
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await h.client()
                await asyncio.sleep(0.5)  # the attempt fails meanwhile (the socket timeout), unobserved
            assert len(silent._socks) == 2  # the second caller made its own attempt and waited for it
            await h.close()

        run(go())


def test_a_down_redis_fails_fast() -> None:
    async def go() -> None:
        h = RedisHandle(f"redis://127.0.0.1:{free_port()}/0", OPTS)
        t0 = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            await h.client()
        assert time.monotonic() - t0 < 1.5 and h.connected is None and h.cluster is None
        await h.close()

    run(go())


def test_guarded_work_answers_its_own_error(shared_redis: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    """A failure of Redis becomes the caller's 503, at the caller's timeout and logged once; an answer
    the work gives itself (a GatewayError) passes through untouched."""
    log = logging.getLogger("switchyard.test")

    def down() -> GatewayError:
        return store_unavailable("The test store is unavailable.", "test_unavailable")

    async def go() -> None:
        with SilentListener() as silent:
            h = RedisHandle(silent.url, OPTS)
            t0 = time.monotonic()
            with pytest.raises(GatewayError) as e, caplog.at_level(logging.WARNING, "switchyard.test"):
                async with guarded(h, "test store read", down, log, timeout=0.3) as r:
                    await r.get("never")
            assert time.monotonic() - t0 < 1.0
            assert (e.value.status, e.value.code, e.value.headers) == (503, "test_unavailable", {"retry-after": "5"})
            assert [m.getMessage() for m in caplog.records] == ["test store read failed: TimeoutError"]
            await h.close()
        h = RedisHandle(REDIS_URL, OPTS)
        with pytest.raises(GatewayError) as e:
            async with guarded(h, "test store read", down, log) as r:
                assert await r.ping()
                raise GatewayError(404, "No such thing.", code="not_found")
        assert e.value.status == 404
        await h.close()

    run(go())
