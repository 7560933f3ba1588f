"""Redis for the tests: the shared server's URL, a private ``redis-server``, and two fakes of a broken one.

The shared server (``SWITCHYARD_TEST_REDIS``, default 127.0.0.1:6379) only ever sees keys under a
test's own prefix (the ``redis_prefix`` fixture, which deletes them); tests that stop or break Redis
run their own ``redis-server`` (``RedisProcess``) or a fake one (``SilentListener``, ``ReplyDropProxy``).
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import redis

from gateway.accounting.usage.redis_store import RedisStore
from gateway.config import UsageConfig
from tests.support import free_port, wait_until

REDIS_URL = os.environ.get("SWITCHYARD_TEST_REDIS", "redis://127.0.0.1:6379/0")


def delete_prefix(r: redis.Redis, prefix: str) -> None:
    keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        r.delete(*keys)


def forget_prefixes(prefixes: list[str]) -> None:
    """Delete every key under ``prefixes`` in the shared Redis (nothing to do when it does not answer)."""
    if not prefixes:
        return
    r = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=5)
    try:
        for prefix in prefixes:
            delete_prefix(r, prefix)
    except redis.ConnectionError:
        pass
    finally:
        r.close()


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


def store_for(url: str, prefix: str, **kw: Any) -> RedisStore:
    cfg = UsageConfig(redis_url=url, prefix=prefix, log_max_len=kw.pop("log_max_len", 1000))
    return RedisStore(cfg, **kw)


def log_entries(r: redis.Redis, prefix: str) -> list[dict[str, str]]:
    return [fields for _id, fields in r.xrange(f"{prefix}log")]
