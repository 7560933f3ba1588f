"""Object ownership in the shared Redis (gateway/routes/objects.py's RedisOwners): the contract and its layout."""

from __future__ import annotations

import asyncio

import pytest

from gateway.routes.objects import RedisOwners
from tests.support.redis import REDIS_URL
from tests.unit.gateway.test_objects import owners_contract  # the contract MemoryOwners meets too


def test_redis_owners_layout(redis_prefix: str) -> None:
    redis = pytest.importorskip("redis")
    from gateway.accounting.usage.redis_store import RedisStore
    from gateway.config import UsageConfig

    prefix = redis_prefix

    async def run() -> None:
        store = RedisStore(UsageConfig(redis_url=REDIS_URL, prefix=prefix))
        try:
            await store.ping()
        except Exception:
            pytest.skip("no Redis at " + REDIS_URL)
        owners = RedisOwners(store)
        await owners_contract(owners)
        await owners.claim([("file-syzz", "team-a")])
        r = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            assert await r.get(f"{prefix}obj:file-syzz") == "team-a"
            assert await r.ttl(f"{prefix}obj:file-syzz") == -1  # no expiry: objects live until deleted
        finally:
            await r.aclose()
            await store.close()

    asyncio.run(run())
