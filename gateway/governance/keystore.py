"""Runtime keys: created, changed, rotated and revoked through ``/admin/keys`` without a reload.

Redis layout (README "Runtime keys and teams"; ops may read it directly, it never holds a key itself):

    {prefix}key:{name}        hash: the key's settings and the sha256 digest of its secret
    {prefix}keyidx:{sha256}   string: the name of the key with that digest; a rotated key's previous
                              digest keeps its entry for the grace period (with that TTL)
    {prefix}audit             stream: every change (``time``, ``admin``, ``action``, ``key``, ``detail``)
    {prefix}keys              set: the runtime keys' names (what a full sync reads)
    {prefix}keys:version      counter: bumped after every change, with the publish, by one script
    {prefix}keys:changed      pub/sub channel: ``"{version} {name}"`` after every change

Every command touches one key (or runs one script over one key), never a multi-key transaction, so
Redis Cluster works although the contract's names carry no hash tag. Writes are ordered so that a
failure half-way leaves nothing that authenticates: the hash first, then the index, then the
announcement.

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

Redis down: the cache keeps serving every known key; unknown keys are refused without waiting;
changes answer 503. Without Redis at all (no ``usage.redis_url``) the keys live in this process only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.config import KeyConfig, Limits
from gateway.errors import GatewayError, invalid_api_key
from gateway.pipeline.auth import Principal

log = logging.getLogger("switchyard.keys")

KEY_PREFIX = "sk-sy-"
KEY_BYTES = 32  # random bytes in a key (urlsafe base64: 43 characters)
CHECK_INTERVAL = 0.5  # seconds between reads of the version counter
FULL_SYNC_INTERVAL = 60.0  # seconds between full syncs whatever the counter says (a change never announced)
LOOKUP_TIMEOUT = 0.25  # seconds: the longest an unknown key waits for Redis
LOOKUP_COOLDOWN = 1.0  # seconds unknown keys skip Redis after a failed lookup
LOOKUP_BURST = 20  # unknown-key lookups allowed at once ...
LOOKUP_RATE = 5.0  # ... and per second after that (per process)
NEGATIVE_TTL = 10.0  # seconds a digest found to be no key is refused without asking again
NEGATIVE_MAX = 100_000  # remembered misses before the memory is cleared
WRITE_TIMEOUT = 3.0  # seconds an admin change may take before it answers 503
SYNC_TIMEOUT = 5.0  # seconds a full sync may take
START_WAIT = 2.0  # seconds start-up waits for the first sync before serving without it
AUDIT_MAX_LEN = 100_000  # audit entries kept (XADD MAXLEN ~)
MEMORY_AUDIT_MAX = 10_000

# The hash is created only if the name is free (one key: cluster-safe). ARGV: field/value pairs.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""
# Change fields of an existing key; answers its whole hash afterwards (empty when there is none).
# ARGV: field/value pairs.
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
redis.call('HSET', KEYS[1], unpack(ARGV))
return redis.call('HGETALL', KEYS[1])
"""
# Delete a key's hash, answering the digests it held (for their index entries).
_DELETE = """
local d = redis.call('HMGET', KEYS[1], 'digest', 'prev_digest')
if not d[1] then return false end
redis.call('DEL', KEYS[1])
return {d[1], d[2] or ''}
"""
# Bump the version and announce the change in one step, so messages go out in version order.
# KEYS[1] the version counter; ARGV[1] the channel, ARGV[2] the key's name.
_ANNOUNCE = """
local v = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], v .. ' ' .. ARGV[2])
return v
"""


def new_secret() -> tuple[str, str]:
    """A fresh key and its sha256 digest."""
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    return key, hashlib.sha256(key.encode()).hexdigest()


def rfc3339(ts: float | None) -> str | None:
    """Unix seconds as RFC 3339 in UTC (``2027-06-30T00:00:00Z``); milliseconds only when present."""
    if ts is None:
        return None
    spec = "seconds" if ts == int(ts) else "milliseconds"
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def _num(v: str | None) -> float | None:
    return float(v) if v else None


@dataclass(slots=True, frozen=True)
class RuntimeKey:
    """One runtime key as stored: its settings and digests, never the key itself."""

    name: str
    digest: str
    models: tuple[str, ...] = ("*",)
    limits: Limits = field(default_factory=Limits)
    team: str | None = None
    expires_at: float | None = None
    disabled: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    files_provider: str | None = None
    created_at: float = 0.0
    created_by: str = ""
    updated_at: float = 0.0
    rotated_at: float | None = None
    prev_digest: str = ""  # the key before the last rotation, accepted until ``prev_until``
    prev_until: float = 0.0

    def accepts(self, digest: str, now: float) -> bool:
        if self.disabled or (self.expires_at is not None and now >= self.expires_at):
            return False
        if hmac.compare_digest(digest, self.digest):
            return True
        return bool(self.prev_digest) and now < self.prev_until and hmac.compare_digest(digest, self.prev_digest)

    def status(self, now: float) -> str:
        if self.disabled:
            return "disabled"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def to_hash(self) -> dict[str, str]:
        return {
            "name": self.name,
            "digest": self.digest,
            "models": orjson.dumps(list(self.models)).decode(),
            "limits": self.limits.model_dump_json(exclude_none=True),
            "team": self.team or "",
            "expires_at": "" if self.expires_at is None else repr(self.expires_at),
            "disabled": "1" if self.disabled else "0",
            "metadata": orjson.dumps(self.metadata).decode(),
            "files_provider": self.files_provider or "",
            "created_at": repr(self.created_at),
            "created_by": self.created_by,
            "updated_at": repr(self.updated_at),
            "rotated_at": "" if self.rotated_at is None else repr(self.rotated_at),
            "prev_digest": self.prev_digest,
            "prev_until": repr(self.prev_until) if self.prev_digest else "",
        }

    @classmethod
    def from_hash(cls, name: str, h: dict[str, str]) -> RuntimeKey:
        """Parse a stored hash; raises ValueError (or a pydantic error) for one that is not a key."""
        if not h.get("digest"):
            raise ValueError("no digest")
        return cls(
            name=name,
            digest=h["digest"],
            models=tuple(orjson.loads(h.get("models") or '["*"]')),
            limits=Limits.model_validate_json(h.get("limits") or "{}"),
            team=h.get("team") or None,
            expires_at=_num(h.get("expires_at")),
            disabled=h.get("disabled") == "1",
            metadata=orjson.loads(h.get("metadata") or "{}"),
            files_provider=h.get("files_provider") or None,
            created_at=_num(h.get("created_at")) or 0.0,
            created_by=h.get("created_by", ""),
            updated_at=_num(h.get("updated_at")) or 0.0,
            rotated_at=_num(h.get("rotated_at")),
            prev_digest=h.get("prev_digest", ""),
            prev_until=_num(h.get("prev_until")) or 0.0,
        )

    def public(self, now: float | None = None) -> dict[str, Any]:
        """The admin API's view: settings and times, never a key or digest."""
        now = time.time() if now is None else now
        in_grace = bool(self.prev_digest) and now < self.prev_until
        return {
            "object": "key",
            "name": self.name,
            "source": "runtime",
            "status": self.status(now),
            "team": self.team,
            "models": list(self.models),
            "limits": self.limits.model_dump(exclude_none=True),
            "expires_at": rfc3339(self.expires_at),
            "disabled": self.disabled,
            "metadata": self.metadata,
            "files_provider": self.files_provider,
            "created_at": rfc3339(self.created_at),
            "created_by": self.created_by,
            "updated_at": rfc3339(self.updated_at),
            "rotated_at": rfc3339(self.rotated_at),
            "previous_key_expires_at": rfc3339(self.prev_until) if in_grace else None,
        }


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


def _unavailable() -> GatewayError:
    return GatewayError(
        503,
        "The key store (Redis) is unreachable, so keys cannot be changed right now; existing keys keep working. "
        "Retry shortly.",
        code="keystore_unavailable",
        headers={"retry-after": "5"},
    )


def _not_found(name: str) -> GatewayError:
    return GatewayError(404, f"No runtime key named '{name}'.", param="name", code="key_not_found")


def _taken(name: str) -> GatewayError:
    return GatewayError(409, f"A key named '{name}' already exists.", param="name", code="key_exists")


class KeyStore:
    """The runtime keys: the in-memory cache every request reads, and the changes admins make.

    ``store`` is the usage store's ``RedisStore`` (its connection is shared), or None to keep the
    keys in this process.
    """

    def __init__(self, store: Any | None, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self.names_key = f"{prefix}keys"
        self.version_key = f"{prefix}keys:version"
        self.channel = f"{prefix}keys:changed"
        self.audit_key = f"{prefix}audit"
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
        self._audit: deque[tuple[str, dict[str, str]]] = deque(maxlen=MEMORY_AUDIT_MAX)
        self._audit_seq = itertools.count()

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

    # -- changes (the admin API) ------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _redis(self) -> AsyncIterator[Any]:
        """A Redis client for one change: errors and timeouts become 503 ``keystore_unavailable``."""
        try:
            async with asyncio.timeout(WRITE_TIMEOUT):
                yield await self.store.client()
        except GatewayError:
            raise
        except Exception as e:
            log.warning("runtime keys: a change failed: %s", type(e).__name__)
            raise _unavailable() from None

    async def _announce(self, r: Any, name: str, action: str, admin: str, detail: str) -> None:
        """Bump the version and publish (one script), then append to the audit stream."""
        await r.eval(_ANNOUNCE, 1, self.version_key, self.channel, name)
        try:
            await r.xadd(self.audit_key, _audit_fields(admin, action, name, detail), maxlen=AUDIT_MAX_LEN)
        except Exception as e:  # the change is done and announced; say so loudly rather than fail it
            log.error("runtime keys: audit entry for %s %s by %s not written: %s", action, name, admin, e)

    def _audit_local(self, name: str, action: str, admin: str, detail: str) -> None:
        ms = int(time.time() * 1000)
        self._audit.append((f"{ms}-{next(self._audit_seq)}", _audit_fields(admin, action, name, detail)))

    async def create(self, key: RuntimeKey, admin: str) -> tuple[RuntimeKey, str]:
        """Store a new key (``key.digest`` is replaced); answers it and its secret, shown only now."""
        secret, digest = new_secret()
        now = time.time()
        key = replace(key, digest=digest, created_at=now, updated_at=now, created_by=admin)
        detail = f"team={key.team}" if key.team else ""
        if self.store is None:
            if key.name in self._by_name:
                raise _taken(key.name)
            self._install(key)
            self._audit_local(key.name, "create", admin, detail)
            return key, secret
        async with self._redis() as r:
            if not await r.eval(_CREATE, 1, self._key(key.name), *_pairs(key.to_hash())):
                raise _taken(key.name)
            try:
                await r.set(self._idx(digest), key.name)
                await r.sadd(self.names_key, key.name)
                await self._announce(r, key.name, "create", admin, detail)
            except Exception:
                # Nobody will ever see this key: free the name again if Redis still answers.
                with contextlib.suppress(Exception):
                    await r.delete(self._idx(digest))
                    await r.srem(self.names_key, key.name)
                    await r.delete(self._key(key.name))
                raise
        self._install(key)  # read-your-writes on this replica before the message comes back
        return key, secret

    async def update(self, name: str, changes: dict[str, Any], admin: str) -> RuntimeKey:
        """Change settings (the fields of ``RuntimeKey`` given in ``changes``)."""
        now = time.time()
        if self.store is None:
            current = self.get(name)
            if current is None:
                raise _not_found(name)
            key = replace(current, **changes, updated_at=now)
            self._install(key)
            self._audit_local(name, "update", admin, "fields=" + ",".join(sorted(changes)))
            return key
        # Only the changed fields are written, so concurrent changes of other fields are kept.
        probe = replace(RuntimeKey(name=name, digest="-"), **changes, updated_at=now).to_hash()
        fields = {f: probe[f] for f in (*changes, "updated_at")}
        async with self._redis() as r:
            flat = await r.eval(_UPDATE, 1, self._key(name), *_pairs(fields))
            if not flat:
                raise _not_found(name)
            key = self._parse(name, dict(zip(flat[::2], flat[1::2], strict=True)))
            if key is None:
                raise _unavailable()
            await self._announce(r, name, "update", admin, "fields=" + ",".join(sorted(changes)))
        self._install(key)
        return key

    async def revoke(self, name: str, admin: str) -> None:
        if self.store is None:
            if name not in self._by_name:
                raise _not_found(name)
            self._drop(name)
            self._audit_local(name, "revoke", admin, "")
            return
        async with self._redis() as r:
            digests = await r.eval(_DELETE, 1, self._key(name))
            # No hash but still listed: an earlier revocation failed half-way; finish it (announce it).
            if not digests and not await r.sismember(self.names_key, name):
                raise _not_found(name)
            for d in digests or ():
                if d:
                    await r.delete(self._idx(d))
            await r.srem(self.names_key, name)  # last but the announcement, so a retry can finish
            await self._announce(r, name, "revoke", admin, "")
        self._drop(name)

    async def rotate(self, name: str, grace_seconds: int, admin: str) -> tuple[RuntimeKey, str]:
        """A new secret; the old one keeps working for ``grace_seconds`` (0: stops now). A key
        rotated again within a grace period keeps only the latest previous secret."""
        secret, digest = new_secret()
        now = time.time()
        detail = f"grace_seconds={grace_seconds}"
        if self.store is None:
            cur = self.get(name)
            if cur is None:
                raise _not_found(name)
            key = _rotated(cur, digest, grace_seconds, now)
            self._install(key)
            self._audit_local(name, "rotate", admin, detail)
            return key, secret
        async with self._redis() as r:
            h = await r.hgetall(self._key(name))
            cur = self._parse(name, h)
            if cur is None:
                raise _not_found(name)
            key = _rotated(cur, digest, grace_seconds, now)
            fields = {f: v for f, v in key.to_hash().items() if f in _ROTATION_FIELDS}
            # Guarded on the digest read above: two rotations racing cannot both win.
            flat = await r.eval(_ROTATE, 1, self._key(name), cur.digest, *_pairs(fields))
            if not flat:
                raise GatewayError(409, f"Key '{name}' changed meanwhile; retry.", code="conflict")
            await r.set(self._idx(digest), name)
            if grace_seconds > 0:
                await r.set(self._idx(cur.digest), name, ex=grace_seconds)
            else:
                await r.delete(self._idx(cur.digest))
            if cur.prev_digest and cur.prev_digest != cur.digest:
                await r.delete(self._idx(cur.prev_digest))
            await self._announce(r, name, "rotate", admin, detail)
        self._install(key)
        return key, secret

    async def audit(self, limit: int, before: str | None = None) -> tuple[list[dict[str, str]], bool]:
        """Audit entries, newest first, older than ``before`` (an entry id) when given."""
        if self.store is None:
            rows = [(i, f) for i, f in reversed(self._audit) if before is None or _id_lt(i, before)]
            return [{"id": i, **f} for i, f in rows[:limit]], len(rows) > limit
        async with self._redis() as r:
            rows = await r.xrevrange(self.audit_key, max=f"({before}" if before else "+", min="-", count=limit + 1)
        return [{"id": i, **f} for i, f in rows[:limit]], len(rows) > limit


_ROTATION_FIELDS = ("digest", "prev_digest", "prev_until", "rotated_at", "updated_at")
# KEYS[1] the key's hash; ARGV[1] the digest the rotation replaces, then field/value pairs.
_ROTATE = """
if redis.call('HGET', KEYS[1], 'digest') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""


def _rotated(cur: RuntimeKey, digest: str, grace: int, now: float) -> RuntimeKey:
    return replace(
        cur,
        digest=digest,
        prev_digest=cur.digest if grace > 0 else "",
        prev_until=now + grace if grace > 0 else 0.0,
        rotated_at=now,
        updated_at=now,
    )


def _pairs(d: dict[str, str]) -> list[str]:
    return [x for kv in d.items() for x in kv]


def _audit_fields(admin: str, action: str, name: str, detail: str) -> dict[str, str]:
    return {
        "time": rfc3339(round(time.time(), 3)) or "",
        "admin": admin,
        "action": action,
        "key": name,
        "detail": detail,
    }


def _id_lt(a: str, b: str) -> bool:
    """Stream id order (``ms-seq``)."""

    def parts(x: str) -> tuple[int, int]:
        ms, _, seq = x.partition("-")
        try:
            return int(ms), int(seq or 0)
        except ValueError:
            return (0, 0)

    return parts(a) < parts(b)
