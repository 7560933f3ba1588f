"""The buffered usage writer: the request path hands records over, a background task writes them.

``submit`` is synchronous and O(1): the request never waits for Redis. The task takes up to
``batch_size`` records every ``flush_interval`` (or as soon as a full batch is waiting) and
writes them in one pipelined round trip. While Redis is down or hung the current batch is
retried, unchanged and under the same id (the store skips what it already applied), with a
capped backoff; new records wait in the bounded buffer. Records beyond ``buffer_size`` are
dropped, counted in ``switchyard_usage_dropped_records_total`` and logged at most every
``log_every`` seconds, with the true count: drops not yet logged are reported once the burst is
over. On shutdown the buffer is flushed for a bounded time; what remains is counted as dropped
and logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.exceptions import (
    ClusterError,
    OutOfMemoryError,
    ReadOnlyError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.accounting.usage.record import UsageRecord
from gateway.accounting.usage.store import BatchRejected
from gateway.config import UsageConfig

log = logging.getLogger("switchyard.usage")

# Failures that say nothing about the batch itself (Redis down, hung, full, failing over):
# retried for as long as the buffer lasts. Anything else is a rejection of the batch.
TRANSIENT = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterError,
    SlotNotCoveredError,
    TryAgainError,
    ReadOnlyError,
    OutOfMemoryError,
    TimeoutError,
    OSError,
)


class BatchStore(Protocol):
    async def write_batch(self, batch_id: str, records: list[UsageRecord]) -> None: ...
    async def ping(self) -> bool: ...


class WriterMetrics(Protocol):
    def usage_buffered(self, n: int) -> None: ...
    def usage_dropped(self, n: int) -> None: ...


@dataclass(slots=True)
class Batch:
    records: list[UsageRecord]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    failures: int = 0  # non-transient failures so far


@dataclass(frozen=True, slots=True)
class WriterTuning:
    """The writer's patience with a failing store (the defaults are what the gateway runs with)."""

    write_timeout: float = 10.0  # a safety net above the client's socket timeouts
    max_backoff: float = 1.0
    max_failures: int = 8  # a batch Redis keeps rejecting (not unreachable) is given up
    health_interval: float = 5.0  # seconds without a round trip before an idle writer pings
    log_every: float = 10.0  # seconds between log lines about an outage or drops


DEFAULT_TUNING = WriterTuning()


class UsageWriter:
    """``cfg`` gives the batch size, flush interval and buffer size (``usage:`` in the config)."""

    def __init__(
        self,
        store: BatchStore,
        cfg: UsageConfig,
        metrics: WriterMetrics | None = None,
        tuning: WriterTuning = DEFAULT_TUNING,
    ) -> None:
        self.store = store
        self.batch_size = cfg.batch_size
        self.flush_interval = cfg.flush_interval
        self.buffer_size = cfg.buffer_size
        self.metrics = metrics
        self.write_timeout = tuning.write_timeout
        self.max_backoff = tuning.max_backoff
        self.max_failures = tuning.max_failures
        self.health_interval = tuning.health_interval
        self.log_every = tuning.log_every
        self.reachable: bool | None = None  # None until the first round trip
        self.written = 0
        self.dropped = 0
        self._pending: deque[UsageRecord] = deque()
        self._batch: Batch | None = None
        self._wake: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._last_contact = 0.0
        self._failures = 0  # consecutive failed round trips, for the backoff
        self._reported = -1
        self._dropped_unlogged = 0
        self._last_drop_why = ""
        self._last_drop_log = 0.0
        self._last_outage_log = 0.0

    # -- the request path ------------------------------------------------------------------
    def submit(self, rec: UsageRecord) -> None:
        """Queue one record; never blocks, never raises."""
        if self._closed or self.buffered >= self.buffer_size:
            self._drop(1, "the usage buffer is full" if not self._closed else "the usage writer is closed")
            return
        self._pending.append(rec)
        if len(self._pending) >= self.batch_size and self._wake is not None and not self._wake.is_set():
            self._wake.set()

    @property
    def buffered(self) -> int:
        """Records not yet confirmed written (waiting, plus the batch in flight)."""
        return len(self._pending) + (len(self._batch.records) if self._batch else 0)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def status(self) -> dict[str, Any]:
        return {
            "kind": "redis",
            "reachable": self.reachable,
            "buffered": self.buffered,
            "buffer_size": self.buffer_size,
            "dropped": self.dropped,
        }

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-writer")

    async def close(self, timeout: float = 5.0) -> None:
        """Stop taking records and flush what is buffered, for at most ``timeout`` seconds."""
        self._closed = True
        if self._task is not None and self._stop is not None and self._wake is not None:
            self._stop.set()
            self._wake.set()
            try:
                await asyncio.wait_for(self._task, timeout)
            except (TimeoutError, asyncio.CancelledError):
                pass
        left = self.buffered
        if left:
            self._pending.clear()
            self._batch = None
            self._drop(left, "the usage store could not be reached before shutdown", force_log=True)
        self._report_drops(force=True)
        self._report()

    # -- the background task ---------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wake is not None and self._stop is not None
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            if not await self._drain():
                await self._sleep(self._backoff())
            elif not self.buffered and time.monotonic() - self._last_contact > self.health_interval:
                await self._check_health()
            self._report()
            self._report_drops()
        await self._final_flush()

    async def _drain(self) -> bool:
        """Write batches until the buffer is empty; False after a failed round trip."""
        while self._batch is not None or self._pending:
            if self._batch is None:
                n = min(self.batch_size, len(self._pending))
                self._batch = Batch([self._pending.popleft() for _ in range(n)])
            if not await self._write(self._batch):
                return False
            self._batch = None
            if self._stop is not None and self._stop.is_set():
                return True  # the final flush takes over, with its deadline
        return True

    async def _write(self, batch: Batch) -> bool:
        try:
            await asyncio.wait_for(self.store.write_batch(batch.id, batch.records), self.write_timeout)
        except TRANSIENT as e:
            self._transient_failure(e)
            return False
        except Exception as e:
            # Redis answered but refused (part of) the batch (WRONGTYPE, CROSSSLOT...): retry, then
            # give up on it. A refused unit left nothing behind and applied ones are skipped on the
            # retry, so what is lost is exactly the records of the units still refused.
            self._contact(True)
            self._failures += 1
            batch.failures += 1
            if batch.failures < self.max_failures:
                log.warning("usage write rejected (attempt %d): %s", batch.failures, e)
                return False
            self._batch = None
            lost = e.lost if isinstance(e, BatchRejected) else len(batch.records)
            self._drop(lost, f"Redis rejected them {batch.failures} times: {e}", force_log=True)
            return True
        self._contact(True)
        self._failures = 0
        self.written += len(batch.records)
        return True

    async def _final_flush(self) -> None:
        # ``close`` bounds this with its timeout; a failing store gets short, quick retries.
        while self.buffered:
            if not await self._drain():
                await asyncio.sleep(min(0.1, self.flush_interval))

    async def _check_health(self) -> None:
        try:
            await asyncio.wait_for(self.store.ping(), self.write_timeout)
        except Exception as e:
            self._transient_failure(e)
        else:
            self._contact(True)

    # -- bookkeeping -----------------------------------------------------------------------
    def _contact(self, ok: bool) -> None:
        if ok and self.reachable is False:
            log.warning("usage store reachable again; writing %d buffered records", self.buffered)
        self.reachable = ok
        self._last_contact = time.monotonic()

    def _transient_failure(self, e: BaseException) -> None:
        self._contact(False)
        self._failures += 1
        now = time.monotonic()
        if now - self._last_outage_log >= self.log_every:
            self._last_outage_log = now
            log.warning(
                "usage store unreachable (%s: %s); %d records buffered (limit %d)",
                type(e).__name__,
                e,
                self.buffered,
                self.buffer_size,
            )

    def _backoff(self) -> float:
        return min(self.max_backoff, 0.05 * 2 ** min(self._failures, 10))

    async def _sleep(self, seconds: float) -> None:
        assert self._stop is not None
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    def _drop(self, n: int, why: str, force_log: bool = False) -> None:
        self.dropped += n
        self._dropped_unlogged += n
        if self.metrics is not None:
            self.metrics.usage_dropped(n)
        self._last_drop_why = why
        self._report_drops(force_log)
        self._report()  # the buffer is full (or being given up): show it even while a write hangs

    def _report_drops(self, force: bool = False) -> None:
        """Log the drops not yet logged, at most every ``log_every`` seconds (or now, ``force``):
        the writer's loop calls this too, so the end of a burst is reported with its true count."""
        if not self._dropped_unlogged:
            return
        now = time.monotonic()
        if force or now - self._last_drop_log >= self.log_every:
            self._last_drop_log = now
            log.error(
                "dropped %d usage records since the last report (latest: %s); %d dropped in total",
                self._dropped_unlogged,
                self._last_drop_why,
                self.dropped,
            )
            self._dropped_unlogged = 0

    def _report(self) -> None:
        n = self.buffered
        if self.metrics is not None and n != self._reported:
            self._reported = n
            self.metrics.usage_buffered(n)
