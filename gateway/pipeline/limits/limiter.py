"""The limiter: admission and settlement of a subject's limits, in Redis or, without it, in memory.

With Redis each admission is one Lua script (``lua.py``); settlements are queued and written by one
background task in pipelined batches, so ``settle`` never waits. Redis down or slow: ``when_down``
applies, the failure is counted and Redis is skipped for ``cooldown`` seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from gateway.config import Limits
from gateway.errors import GatewayError
from gateway.governance.cost import micro_to_usd
from gateway.pipeline.limits.lua import ADMIT_LUA, SETTLE_LUA
from gateway.pipeline.limits.memory import MemoryLimits
from gateway.pipeline.limits.verdict import (
    BUDGET_KINDS,
    EMPTY,
    RPM,
    Admission,
    TeamLimits,
    Verdict,
    budget_micro,
    budget_refusal,
    budget_windows,
    has_limits,
    headers_for,
    refusal,
    retry_after,
    tighter,
)
from gateway.wire.queues import batches
from gateway.wire.redis import ClientOptions, RedisHandle

log = logging.getLogger("switchyard.limits")

WINDOW = 60.0  # seconds: the rolling window of rpm and tpm
BUCKETS = 60  # token buckets per window
REDIS_TIMEOUT = 0.25  # seconds: longest wait for Redis on the request path
REDIS_COOLDOWN = 1.0  # seconds Redis is skipped after a failure
SETTLE_QUEUE = 10_000  # settlements waiting for Redis before new ones are dropped
SETTLE_BATCH = 256  # settlements per pipelined round trip


@dataclass(frozen=True, slots=True)
class LimiterTuning:
    """The limiter's clock and patience (the defaults are what the gateway runs with)."""

    window: float = WINDOW  # seconds: the rolling window of rpm and tpm
    timeout: float = REDIS_TIMEOUT  # seconds: longest wait for Redis on the request path
    cooldown: float = REDIS_COOLDOWN  # seconds Redis is skipped after a failure


DEFAULT_TUNING = LimiterTuning()


class Limiter:
    """Admission checks for keys with limits; Redis-backed when ``redis_url`` is set."""

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        when_down: str,
        tuning: LimiterTuning = DEFAULT_TUNING,
        *,
        on_failure: Callable[[], None] | None = None,
        on_budget: Callable[[str, str, float, float], None] | None = None,
    ) -> None:
        if when_down not in ("allow", "deny"):
            raise ValueError("when_down must be 'allow' or 'deny'")
        self.prefix = prefix
        self.when_down = when_down
        self.window_ms = max(1, round(tuning.window * 1000))
        self.width = max(1, self.window_ms // BUCKETS)
        self.nb = math.ceil(self.window_ms / self.width)
        self.timeout = tuning.timeout
        self.cooldown = tuning.cooldown
        self.on_failure = on_failure
        # (subject, window, dollars spent or reserved, window end as unix seconds) after each admission
        # of a subject with a budget: the switchyard_budget_* gauges.
        self.on_budget = on_budget
        self.redis_failures = 0  # wired to switchyard_limits_redis_failures_total
        self.settle_dropped = 0
        self.memory = MemoryLimits(self.window_ms, self.width, self.nb)
        self._skip_until = 0.0
        self._healthy = True
        self._ids = itertools.count()
        self._uid = os.urandom(6).hex()  # log members must be unique across processes
        self._names: dict[str, tuple[str, str, str, str]] = {}
        self._queue: asyncio.Queue[tuple[Admission, int, int]] = asyncio.Queue(SETTLE_QUEUE)
        self._worker: asyncio.Task[None] | None = None
        # Its own connection, not the usage store's: the request path waits ``timeout`` at most and
        # never retries (a retry would only stretch the wait past it).
        self._handle = (
            RedisHandle(redis_url, ClientOptions(self.timeout, self.timeout, lean=True)) if redis_url else None
        )
        self._redis: Any = None  # the connected client (the cluster client on a Redis Cluster)
        self._admit_script: Any = None
        self._settle_script: Any = None

    async def _connect(self) -> Any:
        """The connected client, with the scripts registered on it (a cluster client needs its own)."""
        assert self._handle is not None
        r = await self._handle.client()
        if r is not self._redis:
            self._admit_script = r.register_script(ADMIT_LUA)
            self._settle_script = r.register_script(SETTLE_LUA)
            self._redis = r
        return r

    @property
    def uses_redis(self) -> bool:
        return self._handle is not None

    async def start(self) -> None:
        if self._handle is None or self._worker is not None:
            return
        self._worker = asyncio.create_task(self._settle_loop(), name="limits-settle")
        try:
            # Loaded up front so a burst of first requests does not each hit NOSCRIPT and reload.
            async with asyncio.timeout(max(1.0, 4 * self.timeout)):
                r = await self._connect()
                for script in (self._admit_script, self._settle_script):
                    script.sha = await r.script_load(script.script)
        except (RedisError, OSError, TimeoutError) as e:
            self._failed(e)

    async def flush(self, timeout: float = 1.0) -> bool:
        """Wait (bounded) until queued settlements are written; False if they were not all done in time."""
        if self._worker is None:
            return self._queue.empty()
        try:
            async with asyncio.timeout(timeout):
                await self._queue.join()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if self._worker is not None:
            await self.flush(max(1.0, 4 * self.timeout))
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        if self._handle is not None:
            await self._handle.close()
            self._redis = None

    # -- the request path --------------------------------------------------------------------
    async def admit(
        self,
        key_name: str,
        limits: Limits,
        prompt_tokens: int,
        cost: int = 0,
        *,
        team: TeamLimits | None = None,
        what: str = "key",
    ) -> Admission:
        """Admit one request of ``prompt_tokens`` (estimated) that may cost up to ``cost`` micro-dollars
        against the key's limits and then its team's; raise 429 (503 when Redis is down, ``deny``)."""
        own = await self._admit(key_name, limits, prompt_tokens, cost, what=what)
        if team is None or not has_limits(team.limits):
            return own
        try:
            shared = await self._admit(team.subject, team.limits, prompt_tokens, cost, what="team")
        except GatewayError:
            self.settle(own, 0)  # refund the key's charges: the request never ran
            raise
        if own is EMPTY:
            return shared
        if shared is not EMPTY:
            own.also = shared
            own.headers = tighter(own.headers, shared.headers)
        return own

    async def _admit(
        self, key_name: str, limits: Limits, prompt_tokens: int, cost: int = 0, *, what: str = "key"
    ) -> Admission:
        if not has_limits(limits):
            return EMPTY
        prompt = max(0, prompt_tokens)
        reserve = max(0, cost)
        if self._handle is None:
            v = self.memory.check(key_name, limits, prompt, reserve)
        else:
            maybe = await self._redis_check(key_name, limits, prompt, reserve)
            if maybe is None:
                return self._redis_down()
            v = maybe
        headers = headers_for(limits, v)
        budget = limits.budget_usd is not None
        if budget and self.on_budget is not None:
            for window, _, used, reset_ms in budget_windows(limits, v):
                self.on_budget(key_name, window, micro_to_usd(used), (v.now_ms + reset_ms) / 1000)
        if not v.allowed:
            h = {k.decode(): val.decode() for k, val in headers}
            h["retry-after"] = str(retry_after(v.retry_ms))
            if v.failed in BUDGET_KINDS:
                raise GatewayError(
                    429,
                    budget_refusal(key_name, limits, reserve, v, what),
                    type="insufficient_quota",
                    code="insufficient_quota",
                    headers=h,
                )
            raise GatewayError(
                429,
                refusal(key_name, limits, prompt, v, what),
                type="requests" if v.failed == RPM else "tokens",
                code="rate_limit_exceeded",
                headers=h,
            )
        return Admission(
            headers,
            key_name,
            charged=prompt,
            bucket=v.bucket,
            day=v.day,
            tpm=limits.tpm is not None,
            tpd=limits.tokens_per_day is not None,
            budget=budget,
            reserved=reserve if budget else 0,
            month=v.month,
        )

    def settle(self, admission: Admission, total_tokens: int, cost: int = 0) -> None:
        """Reconcile the prompt estimate with the real total and the reserved cost with the real one
        (micro-dollars); never waits (Redis writes are queued)."""
        if admission.also is not None:
            self.settle(admission.also, total_tokens, cost)
        if admission.settled or not (admission.tpm or admission.tpd or admission.budget):
            return
        admission.settled = True
        delta = max(0, total_tokens) - admission.charged if (admission.tpm or admission.tpd) else 0
        cost_delta = max(0, cost) - admission.reserved if admission.budget else 0
        if delta == 0 and cost_delta == 0:
            return
        if self._handle is None:
            self.memory.settle(admission, delta, cost_delta)
            return
        try:
            self._queue.put_nowait((admission, delta, cost_delta))
        except asyncio.QueueFull:
            self.settle_dropped += 1

    # -- Redis ---------------------------------------------------------------------------------
    def _keys(self, key_name: str) -> tuple[str, str, str, str]:
        keys = self._names.get(key_name)
        if keys is None:
            # The braces are a Redis Cluster hash tag: all of one subject's limit keys share a slot.
            base = f"{self.prefix}rl:{{{key_name}}}:"
            keys = self._names[key_name] = (base + "rpm", base + "tpm", base + "tpd", base + "bud")
        return keys

    async def _redis_check(self, key_name: str, limits: Limits, prompt: int, reserve: int = 0) -> Verdict | None:
        if time.monotonic() < self._skip_until:
            return None
        bday, bmon = budget_micro(limits)
        args = (
            limits.rpm or 0,
            limits.tpm or 0,
            limits.tokens_per_day or 0,
            prompt,
            self.window_ms,
            self.width,
            self.nb,
            f"{self._uid}:{next(self._ids)}",
            bday,
            bmon,
            reserve,
        )
        try:
            async with asyncio.timeout(self.timeout):
                if self._redis is None:
                    await self._connect()  # not connected at start-up: within this request's wait
                r = await self._admit_script(keys=self._keys(key_name), args=args)
        except (RedisError, OSError, TimeoutError) as e:
            self._failed(e)
            return None
        if not self._healthy:
            log.warning("limits: Redis is back")
            self._healthy = True
        # The script answers in Verdict's field order: two flags and a name, then counts and times.
        failed = r[1].decode() if isinstance(r[1], bytes) else str(r[1])
        return Verdict(r[0] == 1, failed, int(r[2]), r[3] == 1, *map(int, r[4:16]))

    def _failed(self, e: BaseException) -> None:
        if self._healthy:
            # Once per outage, not once per request.
            log.warning("limits: Redis unavailable (%s); when_down=%s applies", type(e).__name__, self.when_down)
        self._healthy = False
        self.redis_failures += 1
        self._skip_until = time.monotonic() + self.cooldown
        if self.on_failure is not None:
            self.on_failure()

    def _redis_down(self) -> Admission:
        if self.when_down == "allow":
            return EMPTY
        raise GatewayError(
            503,
            "Rate limits cannot be checked right now (the limits store is unreachable); please retry shortly.",
            code="limits_unavailable",
            headers={"retry-after": str(retry_after(self.cooldown * 1000))},
        )

    async def _settle_loop(self) -> None:
        async for batch in batches(self._queue, SETTLE_BATCH):
            try:
                await self._settle_batch(batch)
            except Exception:  # the worker must outlive any one bad batch
                self.settle_dropped += len(batch)
                log.exception("limits: settlement batch failed")

    async def _settle_batch(self, batch: list[tuple[Admission, int, int]]) -> None:
        if time.monotonic() < self._skip_until:
            self.settle_dropped += len(batch)
            return
        try:
            # Off the request path, so a batch may take longer than one admission.
            async with asyncio.timeout(max(1.0, 4 * self.timeout)):
                r = self._redis if self._redis is not None else await self._connect()
                pipe = r.pipeline(transaction=False)
                for a, delta, cost_delta in batch:
                    _, tpm_key, tpd_key, bud_key = self._keys(a.key_name)
                    args = (
                        delta if a.tpm or a.tpd else 0,
                        a.bucket,
                        a.day,
                        self.width,
                        self.nb,
                        int(a.tpm and delta != 0),
                        int(a.tpd and delta != 0),
                        int(a.budget),
                        cost_delta,
                        a.day,
                        a.month,
                    )
                    await self._settle_script(keys=(tpm_key, tpd_key, bud_key), args=args, client=pipe)
                await pipe.execute()
        except (RedisError, OSError, TimeoutError) as e:
            self.settle_dropped += len(batch)
            self._failed(e)
