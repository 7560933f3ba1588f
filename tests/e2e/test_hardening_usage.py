"""Issue 19, usage that survives hostile counts and partial writes: counts clamped before they are
recorded, a batch unit Redis refuses leaves no trace (and exactly its records count as dropped),
a burst of drops is logged with its true count, and model names that never routed are counted
under ``other`` in the usage hashes, as in the metrics."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import httpx
import pytest
import redis

from gateway.accounting.usage.record import MAX_TOKENS
from tests.e2e.conftest import CLIENT_KEY, UPSTREAM_KEY
from tests.e2e.test_usage import hashes, usage_config
from tests.support import wait_until
from tests.support.hardening import ScriptedUpstream, chat_answer, json_reply
from tests.support.redis import REDIS_URL, log_entries, store_for
from tests.support.servers import ServerThread
from tests.support.usage import DAY, make_record
from tests.unit.gateway.test_usage_writer import FakeMetrics, FakeStore, writer_for

H = {"authorization": f"Bearer {CLIENT_KEY}"}


def test_a_burst_of_dropped_records_is_reported_with_its_true_count(caplog: pytest.LogCaptureFixture) -> None:
    """#8: 27,481 records dropped and the log said 1. Now the drops not yet logged are reported
    (rate-limited) while the writer runs, so the log adds up to the truth without a shutdown."""
    store = FakeStore()
    store.fail = [redis.exceptions.ConnectionError("down")] * 10_000  # Redis is down, the loop runs on
    metrics = FakeMetrics()

    async def run() -> int:
        w = writer_for(store, buffer_size=10, metrics=metrics, log_every=0.2)
        w.start()
        for i in range(1000):
            w.submit(make_record(i))
        await asyncio.sleep(0.8)  # the burst is over; no shutdown yet
        logged = _logged(caplog)
        store.fail.clear()
        await w.close(timeout=2)
        return logged

    with caplog.at_level(logging.ERROR, logger="switchyard.usage"):
        logged_before_close = asyncio.run(run())
    assert metrics.dropped == 990
    assert logged_before_close == 990


def _logged(caplog: pytest.LogCaptureFixture) -> int:
    return sum(
        int(m.group(1))
        for r in caplog.records
        if (m := re.match(r"dropped (\d+) usage records since the last report", r.getMessage()))
    )


def test_a_unit_redis_refuses_leaves_no_trace_and_only_its_records_are_dropped(shared_redis, redis_prefix):
    """#6: an HINCRBY failing half-way through a unit (here a counter at the edge of int64) used to
    leave the unit half-applied with its guard set, so the retry skipped it and the drop went
    uncounted. Now the unit undoes itself; the rest of the batch is written once."""
    bad = f"{redis_prefix}usage:bad:{DAY}"
    shared_redis.hset(bad, "prompt_tokens", str(2**63 - 2))  # requests and errors come first, then this fails
    good = [make_record(i, key="good") for i in range(3)]
    refused = [make_record(10 + i, key="bad") for i in range(2)]
    metrics = FakeMetrics()

    async def run() -> Any:
        store = store_for(REDIS_URL, redis_prefix)
        w = writer_for(store, max_failures=2, metrics=metrics)
        w.start()
        for r in [*good, *refused]:
            w.submit(r)
        assert await _until(lambda: w.buffered == 0)
        await w.close()
        await store.close()
        return w

    w = asyncio.run(run())
    assert w.dropped == 2 and metrics.dropped == 2  # exactly the refused unit's records
    assert shared_redis.hgetall(bad) == {"prompt_tokens": str(2**63 - 2)}  # untouched: undone as a whole
    got = {k: int(v) for k, v in shared_redis.hgetall(f"{redis_prefix}usage:good:{DAY}").items()}
    assert got["requests"] == 3 and got["prompt_tokens"] == 9 and got["mock/echo|completion_tokens"] == 15
    assert sorted(e["id"] for e in log_entries(shared_redis, redis_prefix)) == sorted(r.id for r in [*good, *refused])
    guards = list(shared_redis.scan_iter(match=f"{redis_prefix}seen:*"))
    assert guards and not [g for g in guards if ":usage:bad:" in g]  # the refused unit's guard went with it


async def _until(cond: Any, timeout: float = 10.0) -> bool:
    for _ in range(int(timeout / 0.02)):
        if cond():
            return True
        await asyncio.sleep(0.02)
    return bool(cond())


@pytest.fixture(scope="module")
def counting_upstream():
    app = ScriptedUpstream()
    app.script["huge"] = lambda b, p: json_reply(
        200, chat_answer(usage={"prompt_tokens": 2**63 - 1, "completion_tokens": -5, "total_tokens": 0})
    )
    app.script["fine"] = lambda b, p: json_reply(200, chat_answer(usage={"prompt_tokens": 7, "completion_tokens": 3}))
    with ServerThread(app) as srv:
        yield srv


def test_hostile_upstream_counts_are_clamped_and_the_batch_is_written(
    counting_upstream,
    gateway_for,
    shared_redis,
    redis_prefix,
):
    """#6: one upstream usage of 2**63-1 (and a negative one) must neither lose the batch's other
    records nor make a total negative: counts are clamped to 0..MAX_TOKENS first."""
    cfg = usage_config(None, REDIS_URL, redis_prefix)
    cfg["providers"]["up"] = {"kind": "openai", "base_url": counting_upstream.url + "/v1", "api_key": UPSTREAM_KEY}
    gw = gateway_for(cfg)
    body = {"messages": [{"role": "user", "content": "a"}]}
    for model in ("up/fine", "up/huge", "up/fine", "up/huge", "up/fine"):
        r = httpx.post(gw.url + "/v1/chat/completions", json={"model": model, **body}, headers=H, timeout=10)
        assert r.status_code == 200
    assert wait_until(lambda: hashes(shared_redis, redis_prefix, "team-a").get("requests") == 5)
    h = hashes(shared_redis, redis_prefix, "team-a")
    assert h["up/fine|prompt_tokens"] == 21 and h["up/fine|completion_tokens"] == 9
    assert h["up/huge|prompt_tokens"] == 2 * MAX_TOKENS and h["up/huge|completion_tokens"] == 0
    assert h["prompt_tokens"] == 21 + 2 * MAX_TOKENS and h["completion_tokens"] == 9
    assert "switchyard_usage_dropped_records_total 0.0" in httpx.get(gw.url + "/metrics").text


def test_model_names_that_never_route_share_one_placeholder_in_redis(
    gateway_for,
    shared_redis,
    redis_prefix,
):
    """#2: 2,000 junk names added 10,000 hash fields. Names that never reached a provider (404,
    400 before routing) are counted under ``other``; the log keeps the name as asked (bounded)."""
    gw = gateway_for(usage_config(None, REDIS_URL, redis_prefix))
    body = {"messages": [{"role": "user", "content": "a"}]}
    with httpx.Client(base_url=gw.url, headers=H, timeout=10) as c:
        for i in range(200):
            assert c.post("/v1/chat/completions", json={"model": f"junk-{i}/m", **body}).status_code == 404
        assert c.post("/v1/chat/completions", json={"model": "x" * 5000, **body}).status_code == 400
        assert c.post("/v1/chat/completions", json={"model": "mock/echo", **body}).status_code == 200
    assert wait_until(lambda: hashes(shared_redis, redis_prefix, "team-a").get("requests") == 202)
    h = hashes(shared_redis, redis_prefix, "team-a")
    models = {f.rpartition("|")[0] for f in h if "|" in f}
    assert models == {"other", "", "mock/echo"}  # "" is the request whose name was refused unread
    assert h["other|requests"] == 200 and h["other|errors"] == 200
    names = {e["model"] for e in log_entries(shared_redis, redis_prefix)}
    assert "junk-7/m" in names and max(len(n) for n in names) <= 256
    metrics = httpx.get(gw.url + "/metrics").text
    assert "junk-7" not in metrics
