"""The runtime keys' cache: every replica holds all of them in memory, kept current from Redis.

Every replica holds all runtime keys in memory, by name and by digest, so a known key never waits
for Redis. One background task per process keeps the cache current: it subscribes to the channel
(a change reaches every replica within milliseconds), and every ``CHECK_INTERVAL`` it reads the
version counter and does a full sync when it differs from what it has seen (a missed message is
corrected within about a second); a full sync also runs every ``FULL_SYNC_INTERVAL`` whatever the
counter says. Expiry, ``disabled`` and the end of a rotation's grace period are checked against the
clock on every request, so they need no message at all.

An unknown digest may be a key created elsewhere a moment ago whose message has not arrived yet, so
it is looked up in Redis once (``GET keyidx``; concurrent requests for the same digest share one
lookup) and a miss is remembered for ``NEGATIVE_TTL``. Distinct wrong keys would each miss that
cache, so lookups also draw on a token bucket (``LOOKUP_BURST``, then ``LOOKUP_RATE`` per second):
past it an unknown key is refused at once, without Redis. A brute force of any size therefore costs
Redis at most ``LOOKUP_BURST + LOOKUP_RATE * seconds`` lookups; the price is that during such a
flood a key created a moment ago elsewhere may be refused until its message (or the next version
check) arrives.

Redis down: the cache keeps serving every known key; unknown keys are refused without waiting. The
Redis layout and the changes that feed the cache: ``keystore.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from gateway.config import KeyConfig
from gateway.errors import invalid_api_key
from gateway.governance.keys import RuntimeKey
from gateway.pipeline.auth import Principal
from gateway.wire.redis import RedisSource

log = logging.getLogger("switchyard.keys")

CHECK_INTERVAL = 0.5  # seconds between reads of the version counter
FULL_SYNC_INTERVAL = 60.0  # seconds between full syncs whatever the counter says (a change never announced)
LOOKUP_TIMEOUT = 0.25  # seconds: the longest an unknown key waits for Redis
LOOKUP_COOLDOWN = 1.0  # seconds unknown keys skip Redis after a failed lookup
LOOKUP_BURST = 20  # unknown-key lookups allowed at once ...
LOOKUP_RATE = 5.0  # ... and per second after that (per process)
NEGATIVE_TTL = 10.0  # seconds a digest found to be no key is refused without asking again
NEGATIVE_MAX = 100_000  # remembered misses before the memory is cleared
SYNC_TIMEOUT = 5.0  # seconds a full sync may take
START_WAIT = 2.0  # seconds start-up waits for the first sync before serving without it


class _Entry:
    """A cached key and the Principal requests see (rebuilt whenever the key changes)."""

    __slots__ = ("key", "principal")

    def __init__(self, key: RuntimeKey) -> None:
        self.key = key
        self.principal = Principal(
            KeyConfig(
                name=key.name,
                sha256=key.digest,
                models=key.models,
                limits=key.limits,
                team=key.team,
                files_provider=key.files_provider,
            )
        )


class KeyCache:
    """The runtime keys every request reads, by digest, without waiting for Redis.

    ``store`` is the shared Redis connection of ``usage.redis_url`` (a ``RedisHandle``, or anything
    with ``client()``), or None to keep the keys in this process.
    """

    def __init__(self, store: RedisSource | None, prefix: str) -> None:
        self.store: Any = store
        self.prefix = prefix
        self.names_key = f"{prefix}keys"
        self.version_key = f"{prefix}keys:version"
        self.channel = f"{prefix}keys:changed"
        self._by_name: dict[str, _Entry] = {}
        self._by_digest: dict[str, _Entry] = {}
        self._negative: dict[str, float] = {}  # digest -> monotonic time until which it is no key
        self._pending: dict[str, asyncio.Task[RuntimeKey | None]] = {}
        self._tokens = float(LOOKUP_BURST)
        self._refilled = time.monotonic()
        self._skip_until = 0.0
        self.version = -1  # the change counter this cache reflects (-1: never synced)
        self.synced = store is None  # the cache reflects Redis (memory mode: always)
        self.redis_reads = 0  # Redis commands spent on unknown keys (the request path)
        self.refused_unasked = 0  # unknown keys refused without Redis: the lookup budget was spent
        self.syncs = 0  # full syncs done
        self._task: asyncio.Task[None] | None = None
        self._first_try = asyncio.Event()  # the first sync succeeded or failed
        self._was_down = False

    # -- keys ---------------------------------------------------------------------------------
    def _key(self, name: str) -> str:
        return f"{self.prefix}key:{name}"

    def _idx(self, digest: str) -> str:
        return f"{self.prefix}keyidx:{digest}"

    # -- the request path ---------------------------------------------------------------------
    def find(self, digest: str) -> Principal | None:
        """The Principal for a cached key, without waiting. Raises 401 for a key known to be
        invalid (expired, disabled, past its grace) or an unknown one that must not reach Redis;
        None when Redis should be asked (``look_up``)."""
        e = self._by_digest.get(digest)
        if e is not None:
            if e.key.accepts(digest, time.time()):
                return e.principal
            raise invalid_api_key()
        if self.store is None:
            raise invalid_api_key()
        now = time.monotonic()
        until = self._negative.get(digest)
        if until is not None:
            if now < until:
                raise invalid_api_key()
            del self._negative[digest]
        if digest in self._pending:
            return None  # a lookup of this digest is in flight: share it
        if not self.synced or now < self._skip_until:
            raise invalid_api_key()  # Redis is down: never make a request wait for it
        self._tokens = min(float(LOOKUP_BURST), self._tokens + (now - self._refilled) * LOOKUP_RATE)
        self._refilled = now
        if self._tokens < 1.0:
            self.refused_unasked += 1
            raise invalid_api_key()
        self._tokens -= 1.0
        return None

    async def look_up(self, digest: str) -> Principal:
        """Ask Redis about a digest ``find`` did not know (one lookup shared by concurrent requests)."""
        task = self._pending.get(digest)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(digest))
            self._pending[digest] = task
            task.add_done_callback(lambda _t: self._pending.pop(digest, None))
        key = await asyncio.shield(task)
        if key is None or not key.accepts(digest, time.time()):
            raise invalid_api_key()
        e = self._by_name.get(key.name)
        return e.principal if e is not None and e.key is key else _Entry(key).principal

    async def _fetch(self, digest: str) -> RuntimeKey | None:
        key: RuntimeKey | None = None
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT):
                r = await self.store.client()
                self.redis_reads += 1
                name = await r.get(self._idx(digest))
                if name is not None:
                    self.redis_reads += 1
                    key = self._parse(name, await r.hgetall(self._key(name)))
        except Exception as e:  # Redis down or slow: refused now, asked again after the cooldown
            self._skip_until = time.monotonic() + LOOKUP_COOLDOWN
            log.debug("runtime key lookup failed: %s", type(e).__name__)
            return None
        if key is None or digest not in (key.digest, key.prev_digest):
            if len(self._negative) >= NEGATIVE_MAX:
                self._negative.clear()
            self._negative[digest] = time.monotonic() + NEGATIVE_TTL
            return None
        self._install(key)
        return key

    # -- the cache ------------------------------------------------------------------------------
    def _parse(self, name: str, h: dict[str, str]) -> RuntimeKey | None:
        if not h:
            return None
        try:
            return RuntimeKey.from_hash(name, h)
        except Exception as e:
            log.warning("runtime key %r in Redis is malformed and ignored: %s", name, e)
            return None

    def _install(self, key: RuntimeKey) -> None:
        self._drop(key.name)
        e = _Entry(key)
        self._by_name[key.name] = e
        self._by_digest[key.digest] = e
        if key.prev_digest and key.prev_until > time.time():
            self._by_digest[key.prev_digest] = e

    def _drop(self, name: str) -> None:
        old = self._by_name.pop(name, None)
        if old is not None:
            for d in (old.key.digest, old.key.prev_digest):
                if d and self._by_digest.get(d) is old:
                    del self._by_digest[d]

    def _replace_all(self, keys: Iterable[RuntimeKey]) -> None:
        by_name: dict[str, _Entry] = {}
        by_digest: dict[str, _Entry] = {}
        now = time.time()
        for k in keys:
            cur = self._by_name.get(k.name)
            e = cur if cur is not None and cur.key == k else _Entry(k)  # keep Principals (and their caches)
            by_name[k.name] = e
            by_digest[k.digest] = e
            if k.prev_digest and k.prev_until > now:
                by_digest[k.prev_digest] = e
        self._by_name, self._by_digest = by_name, by_digest

    def get(self, name: str) -> RuntimeKey | None:
        e = self._by_name.get(name)
        return e.key if e is not None else None

    def entries(self) -> list[RuntimeKey]:
        return [self._by_name[n].key for n in sorted(self._by_name)]

    # -- life cycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        if self.store is None:
            log.warning(
                "runtime keys: no usage.redis_url, so keys made with /admin/keys live in this process only "
                "(lost on restart, not shared with other workers or replicas)"
            )
            return
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="keystore-sync")
            try:
                # Serve runtime keys from the start when Redis answers; never block start-up on it.
                await asyncio.wait_for(self._first_try.wait(), START_WAIT)
            except TimeoutError:
                pass
            if not self.synced:
                log.warning("runtime keys: Redis did not answer at start-up; syncing in the background")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for t in list(self._pending.values()):
            t.cancel()

    async def _run(self) -> None:
        delay = 0.1
        while True:
            pubsub = None
            try:
                r = await self.store.client()
                pubsub = r.pubsub()
                await pubsub.subscribe(self.channel)  # before the sync: no change falls in between
                await self._full_sync(r)
                delay = 0.1
                await self._follow(r, pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.synced = False  # unknown keys are refused without waiting until the next sync
                self._first_try.set()
                if not self._was_down:
                    log.warning("runtime keys: Redis unavailable (%s); serving the cached keys", type(e).__name__)
                    self._was_down = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()

    async def _follow(self, r: Any, pubsub: Any) -> None:
        """Apply messages as they come; read the version counter every CHECK_INTERVAL."""
        loop = asyncio.get_running_loop()
        next_check = loop.time() + CHECK_INTERVAL
        next_full = loop.time() + FULL_SYNC_INTERVAL
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=max(0.0, next_check - loop.time()))
            if msg is not None and msg.get("type") == "message":
                await self._on_message(r, msg["data"])
            now = loop.time()
            if now >= next_full:
                await self._full_sync(r)
                next_full = now + FULL_SYNC_INTERVAL
                next_check = now + CHECK_INTERVAL
            elif now >= next_check:
                async with asyncio.timeout(SYNC_TIMEOUT):
                    v = int(await r.get(self.version_key) or 0)
                if v != self.version:
                    await self._full_sync(r)
                next_check = loop.time() + CHECK_INTERVAL

    async def _on_message(self, r: Any, data: str) -> None:
        v_text, _, name = data.partition(" ")
        try:
            v = int(v_text)
        except ValueError:
            return
        if v > self.version + 1:
            await self._full_sync(r)  # a message was missed: the whole set
            return
        async with asyncio.timeout(SYNC_TIMEOUT):
            h = await r.hgetall(self._key(name))
        key = self._parse(name, h)
        if key is None:
            self._drop(name)
        else:
            self._install(key)
        self.version = max(self.version, v)

    async def _full_sync(self, r: Any) -> None:
        async with asyncio.timeout(SYNC_TIMEOUT):
            v = int(await r.get(self.version_key) or 0)  # first: a change after it bumps it again
            names = sorted(await r.smembers(self.names_key))
            hashes: list[Any] = []
            if names:
                pipe = r.pipeline(transaction=False)
                for n in names:
                    pipe.hgetall(self._key(n))
                hashes = await pipe.execute()
        keys = [k for n, h in zip(names, hashes, strict=True) if (k := self._parse(n, h)) is not None]
        self._replace_all(keys)
        self.version = v
        self.syncs += 1
        self.synced = True
        if self._was_down:
            log.warning("runtime keys: Redis is back; %d keys synced", len(keys))
            self._was_down = False
        self._first_try.set()
