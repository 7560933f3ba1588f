"""The buffered usage writer: never blocks the request path, loses nothing below the bound.

These drive it with an in-memory fake store (exact control over failures); tests/e2e/test_usage_writer.py
with real Redis: an outage of our own redis-server, a hung one, a lost reply.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis

from gateway.accounting.usage.record import UsageRecord
from gateway.accounting.usage.writer import UsageWriter, WriterTuning
from gateway.config import UsageConfig
from tests.support.usage import make_record


class FakeStore:
    """Applies batches to a dict; ``fail`` holds exceptions to raise on the next calls.

    With ``apply_then_fail`` the batch lands *and then* the call fails, like a lost reply.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.applied: dict[str, set[str]] = {}  # batch id -> record ids (a batch applies once)
        self.fail: list[BaseException] = []
        self.apply_then_fail = False
        self.hang = False

    async def write_batch(self, batch_id: str, records: list[UsageRecord]) -> None:
        self.calls.append((batch_id, [r.id for r in records]))
        if self.hang:
            await asyncio.Event().wait()
        if self.fail and not self.apply_then_fail:
            raise self.fail.pop(0)
        self.applied.setdefault(batch_id, {r.id for r in records})
        if self.fail:
            raise self.fail.pop(0)

    async def ping(self) -> bool:
        return True

    @property
    def ids(self) -> list[str]:
        return sorted(i for batch in self.applied.values() for i in batch)


class FakeMetrics:
    def __init__(self) -> None:
        self.buffered: list[int] = []
        self.dropped = 0

    def usage_buffered(self, n: int) -> None:
        self.buffered.append(n)

    def usage_dropped(self, n: int) -> None:
        self.dropped += n


def writer_for(store: Any, metrics: Any = None, **kw: Any) -> UsageWriter:
    opts: dict[str, Any] = {"batch_size": 10, "flush_interval": 0.01, "buffer_size": 1000, "max_backoff": 0.02}
    opts.update(kw)
    sizes = UsageConfig(**{k: opts.pop(k) for k in ("batch_size", "flush_interval", "buffer_size")})
    return UsageWriter(store, sizes, metrics, WriterTuning(**opts))


async def until(cond: Any, timeout: float = 5.0) -> bool:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return True
        await asyncio.sleep(0.01)
    return bool(cond())


def ids(n: int, start: int = 0) -> list[str]:
    return sorted(f"req_{i}" for i in range(start, start + n))


# -- with a fake store --------------------------------------------------------------------------
def test_submit_is_synchronous_and_batches_are_bounded() -> None:
    store = FakeStore()

    async def run() -> None:
        w = writer_for(store, batch_size=7)
        w.start()
        for i in range(30):
            assert w.submit(make_record(i)) is None  # a plain call: nothing to await
        assert w.buffered == 30  # nothing was written inside submit
        assert await until(lambda: w.buffered == 0)
        await w.close()

    asyncio.run(run())
    assert store.ids == ids(30)
    assert max(len(batch) for _, batch in store.calls) == 7


def test_a_failed_batch_is_retried_unchanged_under_the_same_id() -> None:
    store = FakeStore()
    store.apply_then_fail = True  # it lands, then the reply is "lost"
    store.fail = [redis.exceptions.TimeoutError("Timeout reading from socket"), ConnectionError("reset")]

    async def run() -> UsageWriter:
        w = writer_for(store)
        w.start()
        for i in range(5):
            w.submit(make_record(i))
        assert await until(lambda: w.buffered == 0 and w.reachable is True)
        await w.close()
        return w

    w = asyncio.run(run())
    first_id, first_records = store.calls[0]
    assert all(c == (first_id, first_records) for c in store.calls[:3])  # same id, same records
    assert store.ids == ids(5)  # the store saw one batch, applied once
    assert w.written == 5 and w.dropped == 0


def test_buffer_bound_drops_are_counted_and_logged_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore()
    store.hang = True
    metrics = FakeMetrics()

    async def run() -> UsageWriter:
        w = writer_for(store, buffer_size=20, metrics=metrics, write_timeout=60)
        w.start()
        for i in range(50):
            w.submit(make_record(i))
        await asyncio.sleep(0.05)
        await w.close(timeout=0.2)
        return w

    with caplog.at_level(logging.ERROR, logger="switchyard.usage"):
        w = asyncio.run(run())
    assert w.dropped == 50  # 30 above the bound, then 20 that could not be written before shutdown
    assert metrics.dropped == 50
    drop_logs = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drop_logs) == 2  # one for the 30 overflowing records (rate-limited), one at shutdown
    assert "dropped 1 usage records since the last report (latest: the usage buffer is full)" in (
        drop_logs[0].getMessage()
    )
    assert "dropped 49 usage records" in drop_logs[1].getMessage()
    assert metrics.buffered and max(metrics.buffered) == 20


def test_a_batch_redis_keeps_rejecting_is_given_up() -> None:
    store = FakeStore()
    store.fail = [redis.exceptions.ResponseError("WRONGTYPE")] * 3
    metrics = FakeMetrics()

    async def run() -> UsageWriter:
        w = writer_for(store, max_failures=3, metrics=metrics)
        w.start()
        for i in range(4):
            w.submit(make_record(i))
        assert await until(lambda: w.dropped == 4)
        w.submit(make_record(10))  # the next batch goes through
        assert await until(lambda: w.buffered == 0)
        await w.close()
        return w

    w = asyncio.run(run())
    assert store.ids == ["req_10"]
    assert metrics.dropped == 4 and w.written == 1


def test_close_flushes_the_buffer() -> None:
    store = FakeStore()

    async def run() -> None:
        w = writer_for(store, flush_interval=30, batch_size=1000)  # nothing would flush on its own
        w.start()
        for i in range(25):
            w.submit(make_record(i))
        await w.close(timeout=5)
        w.submit(make_record(99))  # after close: refused and counted, never silently lost
        assert w.dropped == 1

    asyncio.run(run())
    assert store.ids == ids(25)


def test_close_is_bounded_when_the_store_hangs() -> None:
    store = FakeStore()
    store.hang = True

    async def run() -> UsageWriter:
        w = writer_for(store, write_timeout=60)
        w.start()
        for i in range(3):
            w.submit(make_record(i))
        await asyncio.wait_for(w.close(timeout=0.2), 5)  # returns on its own bound
        return w

    w = asyncio.run(run())
    assert w.dropped == 3 and w.buffered == 0
