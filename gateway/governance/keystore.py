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

The cache every request reads, and how it follows these changes: ``keycache.py``; the key model:
``keys.py``. Redis down: changes answer 503. Without Redis at all (no ``usage.redis_url``) the keys
live in this process only.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections import deque
from dataclasses import replace
from typing import Any

from gateway.errors import GatewayError, store_unavailable
from gateway.governance.keycache import CHECK_INTERVAL, LOOKUP_BURST, LOOKUP_RATE, KeyCache
from gateway.governance.keys import ROTATION_FIELDS, RuntimeKey, new_secret, rfc3339, rotated
from gateway.wire.redis import RedisSource, guarded

__all__ = ["CHECK_INTERVAL", "LOOKUP_BURST", "LOOKUP_RATE", "KeyStore", "RuntimeKey", "new_secret", "rfc3339"]

log = logging.getLogger("switchyard.keys")

WRITE_TIMEOUT = 3.0  # seconds an admin change may take before it answers 503
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
# KEYS[1] the key's hash; ARGV[1] the digest the rotation replaces, then field/value pairs.
_ROTATE = """
if redis.call('HGET', KEYS[1], 'digest') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""


def _unavailable() -> GatewayError:
    return store_unavailable(
        "The key store (Redis) is unreachable, so keys cannot be changed right now; existing keys keep working. "
        "Retry shortly.",
        "keystore_unavailable",
    )


def _not_found(name: str) -> GatewayError:
    return GatewayError(404, f"No runtime key named '{name}'.", param="name", code="key_not_found")


def _taken(name: str) -> GatewayError:
    return GatewayError(409, f"A key named '{name}' already exists.", param="name", code="key_exists")


class KeyStore(KeyCache):
    """The runtime keys: the cache every request reads (``KeyCache``), and the changes admins make.

    ``store`` is the shared Redis connection of ``usage.redis_url`` (a ``RedisHandle``, or anything
    with ``client()``), or None to keep the keys in this process.
    """

    def __init__(self, store: RedisSource | None, prefix: str) -> None:
        super().__init__(store, prefix)
        self.audit_key = f"{prefix}audit"
        self._audit: deque[tuple[str, dict[str, str]]] = deque(maxlen=MEMORY_AUDIT_MAX)
        self._audit_seq = itertools.count()

    # -- changes (the admin API) ------------------------------------------------------------------
    def _redis(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """A Redis client for one change: errors and timeouts become 503 ``keystore_unavailable``."""
        return guarded(self.store, "runtime keys: a change", _unavailable, log, WRITE_TIMEOUT)

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
            key = rotated(cur, digest, grace_seconds, now)
            self._install(key)
            self._audit_local(name, "rotate", admin, detail)
            return key, secret
        async with self._redis() as r:
            h = await r.hgetall(self._key(name))
            cur = self._parse(name, h)
            if cur is None:
                raise _not_found(name)
            key = rotated(cur, digest, grace_seconds, now)
            fields = {f: v for f, v in key.to_hash().items() if f in ROTATION_FIELDS}
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
