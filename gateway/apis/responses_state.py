"""Stored responses: what ``GET /v1/responses/{id}`` and ``previous_response_id`` read.

One record per gateway response id, ``{prefix}resp:{id}`` in Redis (through the shared connection of
``usage.redis_url``, standalone or Cluster) with the configured expiry, or in the process without Redis.
A record says who owns the id and which provider answered; for a translated provider it also
keeps the input and output items, since no upstream remembers them.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

import orjson

from gateway.errors import GatewayError, store_unavailable
from gateway.wire.redis import RedisSource, guarded

log = logging.getLogger("switchyard")

MEMORY_MAX = 10_000  # records one process keeps without Redis (oldest dropped first)


def unavailable() -> GatewayError:
    return store_unavailable("The response store is unavailable; try again shortly.", "store_unavailable")


class ResponseStore:
    """``put`` / ``get`` / ``delete`` records by gateway response id."""

    def __init__(self, redis: RedisSource | None, prefix: str, ttl: int) -> None:
        self.redis = redis  # the shared ``RedisHandle`` (``client()``), or None: in the process
        self.prefix = prefix
        self.ttl = ttl
        self._memory: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def key(self, rid: str) -> str:
        return f"{self.prefix}resp:{rid}"

    async def put(self, rid: str, record: dict[str, Any]) -> None:
        data = orjson.dumps(record)
        if self.redis is None:
            self._memory[rid] = (time.time() + self.ttl, data)
            self._memory.move_to_end(rid)
            while len(self._memory) > MEMORY_MAX:
                self._memory.popitem(last=False)
            return
        async with guarded(self.redis, "response store write", unavailable, log) as r:
            await r.set(self.key(rid), data, ex=self.ttl)

    async def get(self, rid: str) -> dict[str, Any] | None:
        if self.redis is None:
            hit = self._memory.get(rid)
            if hit is None or hit[0] < time.time():
                return None
            return orjson.loads(hit[1])
        async with guarded(self.redis, "response store read", unavailable, log) as r:
            data = await r.get(self.key(rid))
        return orjson.loads(data) if data else None

    async def delete(self, rid: str) -> None:
        if self.redis is None:
            self._memory.pop(rid, None)
            return
        async with guarded(self.redis, "response store delete", unavailable, log) as r:
            await r.delete(self.key(rid))
