"""The Redis usage store against real Redis: the contract's layout, idempotent replays, Cluster.

Tests that stop or break Redis run their own ``redis-server`` (``RedisProcess``) or a fake one
(``SilentListener``, ``ReplyDropProxy``); the shared server only ever sees this test's prefix.
The helpers here are shared with test_usage_writer.py and test_usage_e2e.py.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway.accounting.usage.record import UsageRecord
from gateway.accounting.usage.redis_store import GUARD_TTL, LOG_FIELDS, RedisStore, guard_key
from gateway.config import UsageConfig
from gateway.errors import GatewayError
from tests.conftest import REDIS_URL
from tests.servers import free_port

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")

DAY_TS = 1_750_000_000.0  # 2025-06-15 UTC
DAY = "20250615"


# -- helpers shared by the usage tests ----------------------------------------------------------
def make_record(
    n: int = 0,
    key: str = "team-a",
    model: str = "mock/echo",
    status: int = 200,
    stream: bool = False,
    prompt: int = 3,
    completion: int = 5,
    ts: float = DAY_TS,
    **kw: Any,
) -> UsageRecord:
    return UsageRecord(
        id=f"req_{n}",
        key=key,
        model=model,
        provider=model.split("/", 1)[0] if "/" in model else "",
        endpoint="/v1/chat/completions",
        status=status,
        stream=stream,
        prompt_tokens=prompt,
        completion_tokens=completion,
        latency_ms=12.34,
        ttft_ms=4.5 if stream else None,
        ts=ts,
        **kw,
    )


def wait_until(cond: Any, timeout: float = 10.0, step: float = 0.02) -> bool:
    """Poll ``cond`` (bounded); True once it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def delete_prefix(r: redis.Redis, prefix: str) -> None:
    keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        r.delete(*keys)


class RedisProcess:
    """A private ``redis-server`` on a loopback port: these tests may stop and restart it."""

    def __init__(self, workdir: Path, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [*args, *self.extra], cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            if not wait_until(lambda: _pings(client), timeout=5):
                raise RuntimeError(f"redis-server on port {self.port} did not start")
        finally:
            client.close()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=2)


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too (and still a valid port)."""
    for _ in range(200):
        port = free_port()
        if port + 10_000 > 65_535:
            port = random.randrange(20_000, 45_000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for a cluster node")


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class _Listener:
    """A loopback TCP listener whose accepted connections ``_on_connection`` handles (in a thread)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._socks.append(conn)
            self._on_connection(conn)

    def _on_connection(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _spawn(self, target: Any, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def __enter__(self) -> Any:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        for s in self._socks:
            s.close()
        self.sock.close()


class SilentListener(_Listener):
    """Accepts TCP connections and never answers: a hung Redis."""

    def _on_connection(self, conn: socket.socket) -> None:
        pass  # held open, never read, never answered


class ReplyDropProxy(_Listener):
    """A TCP proxy to Redis that, while ``swallow`` is set, forwards commands but drops the replies.

    That is exactly "Redis applied the write, the client timed out": the case idempotency is for.
    """

    def __init__(self, upstream_port: int) -> None:
        super().__init__()
        self.upstream_port = upstream_port
        self.swallow = False

    def _on_connection(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
        self._socks.append(upstream)
        for s in (conn, upstream):
            s.settimeout(0.1)
        self._spawn(self._pump, conn, upstream, False)
        self._spawn(self._pump, upstream, conn, True)

    def _pump(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        while not self._stop.is_set():
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            if replies and self.swallow:
                continue
            try:
                dst.sendall(data)
            except OSError:
                return


@pytest.fixture
def shared_redis(redis_prefix: str) -> Iterator[redis.Redis]:
    """A client of the shared test Redis; this test's keys are deleted afterwards."""
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        r.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    yield r
    delete_prefix(r, redis_prefix)
    r.close()


def store_for(url: str, prefix: str, **kw: Any) -> RedisStore:
    cfg = UsageConfig(redis_url=url, prefix=prefix, log_max_len=kw.pop("log_max_len", 1000))
    return RedisStore(cfg, **kw)


async def write(store: RedisStore, batch_id: str, records: list[UsageRecord]) -> None:
    try:
        await store.write_batch(batch_id, records)
    finally:
        await store.close()


def log_entries(r: redis.Redis, prefix: str) -> list[dict[str, str]]:
    return [fields for _id, fields in r.xrange(f"{prefix}log")]


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


# Hash tag rules and their edge cases ("foo{}{bar}" hashes whole, "foo{{bar}}zap" hashes "{bar"):
# https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags and
# https://support.huaweicloud.com/intl/en-us/dcs_faq/dcs-faq-211228001.html
@pytest.mark.parametrize(
    "prefix,name",
    [
        ("sy:", "team-a"),
        ("{sy}:", "team-a"),
        ("sy:", "team{a}"),
        ("sy:", "we}ird{"),
        ("sy:", "foo{}{bar}"),
        ("sy:", "foo{{bar}}zap"),
        ("", "k"),
    ],
)
def test_guard_shares_the_data_keys_cluster_slot(prefix: str, name: str) -> None:
    from redis.crc import key_slot

    for data_key in (f"{prefix}usage:{name}:{DAY}", f"{prefix}log"):
        g = guard_key(prefix, data_key, "batch1")
        assert g.startswith(f"{prefix}seen:")
        assert key_slot(g.encode()) == key_slot(data_key.encode()), (data_key, g)


# -- Redis Cluster (bonus: only where a small cluster can be created locally) ---------------------
@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[RedisProcess]]:
    """Three masters on loopback, slots split in thirds (what ``redis-cli --cluster create`` does, faster)."""
    nodes = []
    for i in range(3):
        d = tmp_path / f"n{i}"
        d.mkdir()
        extra = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        nodes.append(RedisProcess(d, port=cluster_port(), extra=extra))
    clients: list[redis.Redis] = []
    try:
        for n in nodes:
            n.start()
            clients.append(n.client())
        third = 16384 // 3
        bounds = [(0, third - 1), (third, 2 * third - 1), (2 * third, 16383)]
        for c, (lo, hi) in zip(clients, bounds, strict=True):
            c.execute_command("CLUSTER", "ADDSLOTS", *range(lo, hi + 1))
        for n in nodes[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", n.port)

        def ready() -> bool:
            return all(c.cluster("info")["cluster_state"] == "ok" and len(c.cluster("slots")) == 3 for c in clients)

        if not wait_until(ready, timeout=15, step=0.05):
            pytest.skip("a local Redis Cluster did not form")
        yield nodes
    finally:
        for c in clients:
            c.close()
        for n in nodes:
            n.stop()


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
