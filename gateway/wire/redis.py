"""The one way the gateway connects to Redis, standalone or Cluster.

``connect`` asks the server ``INFO cluster`` and answers the cluster client on a cluster node, the
plain one otherwise (an ACL that denies ``INFO``, or a renamed command, means standalone: only a
cluster needs it). ``RedisHandle`` connects lazily and once: concurrent first callers share one
attempt rather than queue up behind each other's timeouts, and a caller that gives up (its own
timeout) does not cancel it for the others. ``guarded`` turns any failure of one piece of work on
the shared client into the caller's own answer (a 503), logged once.

Each user keeps its own ``ClientOptions``: the limiter on the request path waits a quarter of a
second and never retries, the usage store's background writes wait longer and retry a dropped
connection once. Both get the cluster client when the server is a cluster node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis, RedisCluster
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.retry import Retry

from gateway.errors import GatewayError


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """How one user of Redis talks to it."""

    socket_timeout: float
    connect_timeout: float
    # Quick retries of a dropped pooled connection (Redis restarted); a timeout is never retried,
    # as a retry would only stretch the wait past the caller's.
    retries: int = 0
    decode_responses: bool = False
    # No CLIENT SETINFO and no health checks: fewer round trips when a burst opens connections.
    lean: bool = False

    def kwargs(self, cluster: bool = False) -> dict[str, Any]:
        """The keyword arguments of ``Redis.from_url`` (``cluster``: of ``RedisCluster.from_url``)."""
        kw: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "retry": Retry(NoBackoff(), self.retries, supported_errors=(RedisConnectionError,)),
        }
        if self.decode_responses:
            kw["decode_responses"] = True
        if self.lean:
            kw["driver_info"] = None
            if not cluster:
                kw["health_check_interval"] = 0  # overrides one a URL may carry
        return kw


class RedisSource(Protocol):
    """What a user of a shared connection needs: a ``RedisHandle``, or a store that wraps one."""

    async def client(self) -> Any: ...


async def connect(url: str, options: ClientOptions) -> Redis | RedisCluster:
    """A client of ``url``, connected: the cluster client when the server is a cluster node."""
    plain = Redis.from_url(url, **options.kwargs())
    try:
        info = await plain.info("cluster")
    except ResponseError:
        info = {}  # INFO denied by an ACL or renamed away: only a cluster needs it, assume standalone
    except BaseException:
        await plain.aclose()
        raise
    if not info.get("cluster_enabled"):
        return plain
    await plain.aclose()
    cluster = RedisCluster.from_url(url, **options.kwargs(cluster=True))
    try:
        await cluster.initialize()
    except BaseException:
        await cluster.aclose()
        raise
    return cluster


class RedisHandle:
    """One lazily connected client of ``url``, shared by everything given this handle."""

    def __init__(self, url: str, options: ClientOptions) -> None:
        self.url = url
        self.options = options
        self.cluster: bool | None = None  # known after the first connection
        self.connected: Any = None  # the client, once connected
        self._connecting: asyncio.Task[Any] | None = None

    async def client(self) -> Any:
        """The connected client; raises what the connection attempt raised (or the caller's timeout)."""
        if self.connected is not None:
            return self.connected
        task = self._connecting
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            # None under way, or one that failed after its callers gave up: theirs, not this caller's.
            task = self._connecting = asyncio.get_running_loop().create_task(connect(self.url, self.options))
            task.add_done_callback(_retrieve)  # nobody may be left to read its failure
        try:
            r = await asyncio.shield(task)
        finally:
            if task.done() and self._connecting is task:
                self._connecting = None
        if self.connected is None:
            self.connected = r
            self.cluster = isinstance(r, RedisCluster)
        elif self.connected is not r:
            await r.aclose()  # closed and reconnected meanwhile: keep one client
        return self.connected

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        if self.connected is not None:
            r, self.connected = self.connected, None
            await r.aclose()


@contextlib.asynccontextmanager
async def guarded(
    source: RedisSource, what: str, error: Callable[[], Exception], log: logging.Logger, timeout: float | None = None
) -> AsyncIterator[Any]:
    """The client for one piece of work: any failure in it (Redis down, slow past ``timeout``, refusing)
    is logged as ``what`` and answered with ``error()``, never a traceback. A ``GatewayError`` raised
    inside is the work's own answer and passes through."""
    try:
        async with asyncio.timeout(timeout):
            yield await source.client()
    except GatewayError:
        raise
    except Exception as e:
        log.warning("%s failed: %s", what, type(e).__name__)
        raise error() from None


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
