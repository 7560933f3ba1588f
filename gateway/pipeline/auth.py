"""Client keys: the request's key -> a Principal (name, allowed models, limits, team, admin).

Keys are held only as sha256 digests. The lookup is by digest (which says nothing about
any valid key) and the match is confirmed with a constant-time comparison. Config keys are
looked up first; then the runtime keys (``governance/keycache.py``), from their in-memory cache.
A config key wins a name clash: a runtime key of the same name does not authenticate.
"""

from __future__ import annotations

import hashlib
import hmac
from fnmatch import fnmatchcase
from typing import Protocol

from gateway.config import Config, KeyConfig, Limits
from gateway.errors import invalid_api_key
from gateway.pipeline.limits import TeamLimits, has_limits

_GLOB_CHARS = "*?["
_CACHE_MAX = 4096


class Principal:
    __slots__ = ("_allowed", "admin", "digest", "files_provider", "globs", "limited", "limits", "name", "team")

    def __init__(self, k: KeyConfig) -> None:
        self.name = k.name
        self.admin = k.admin
        self.globs = k.models
        self.limits: Limits = k.limits
        self.limited = has_limits(k.limits)
        self.files_provider = k.files_provider
        self.team = k.team
        self.digest = k.digest()
        self._allowed: dict[str, bool] = {}

    def allows(self, model: str) -> bool:
        hit = self._allowed.get(model)
        if hit is None:
            hit = any(fnmatchcase(model, g) for g in self.globs)
            if len(self._allowed) >= _CACHE_MAX:
                self._allowed.clear()
            self._allowed[model] = hit
        return hit

    def may_reach_vendor(self, vendor: str) -> bool:
        """True when some glob could match a ``vendor/...`` name (for ``GET /v1/models``)."""
        head = vendor + "/"
        for g in self.globs:
            cut = min((g.index(c) for c in _GLOB_CHARS if c in g), default=len(g))
            prefix = g[:cut]
            if head.startswith(prefix) or prefix.startswith(head):
                return True
        return False


class RuntimeKeys(Protocol):
    """The runtime keys' cache (``governance.keystore.KeyStore``)."""

    def find(self, digest: str) -> Principal | None: ...
    async def look_up(self, digest: str) -> Principal: ...


def presented_key(authorization: bytes | None, x_api_key: bytes | None) -> str | None:
    """The key from ``Authorization: Bearer KEY`` or ``x-api-key: KEY``."""
    key: str | None = None
    if authorization:
        scheme, _, token = authorization.decode("latin-1").strip().partition(" ")
        if scheme.lower() == "bearer":
            key = token.strip()
    if not key and x_api_key:
        key = x_api_key.decode("latin-1").strip()
    return key or None


class KeyTable:
    def __init__(self, cfg: Config, runtime: RuntimeKeys | None = None) -> None:
        self._by_digest = {p.digest: p for p in (Principal(k) for k in cfg.keys)}
        self.by_name = {p.name: p for p in self._by_digest.values()}
        self.runtime = runtime
        # Teams with limits: shared by every key naming the team (checked at admission).
        self.team_limits: dict[str, Limits] = {n: t.limits for n, t in cfg.teams.items() if has_limits(t.limits)}
        self.teams = {n: TeamLimits(n, limits) for n, limits in self.team_limits.items()}

    def lookup(self, key: str | None) -> Principal | None:
        if not key:
            return None
        digest = hashlib.sha256(key.encode()).hexdigest()
        p = self._by_digest.get(digest)
        if p is not None and hmac.compare_digest(p.digest, digest):
            return p
        return None

    def authenticate(self, authorization: bytes | None, x_api_key: bytes | None) -> Principal | None:
        """From raw header values, without waiting: a config key or a cached runtime key. Raises the
        401 for a missing or wrong key; None when only the runtime store can tell (``look_up``)."""
        key = presented_key(authorization, x_api_key)
        if not key:
            raise invalid_api_key()
        digest = hashlib.sha256(key.encode()).hexdigest()
        p = self._by_digest.get(digest)
        if p is not None and hmac.compare_digest(p.digest, digest):
            return p
        if self.runtime is None:
            raise invalid_api_key()
        p = self.runtime.find(digest)
        if p is not None and p.name in self.by_name:
            raise invalid_api_key()  # shadowed by a config key of the same name
        return p

    async def look_up(self, authorization: bytes | None, x_api_key: bytes | None) -> Principal:
        """The slow path after ``authenticate`` said None: ask the runtime store (bounded, cached)."""
        key = presented_key(authorization, x_api_key)
        if not key or self.runtime is None:
            raise invalid_api_key()
        p = await self.runtime.look_up(hashlib.sha256(key.encode()).hexdigest())
        if p.name in self.by_name:
            raise invalid_api_key()
        return p

    def team_of(self, p: Principal) -> TeamLimits | None:
        """The key's team as admission takes it; None when the team has no limits."""
        return self.teams.get(p.team) if p.team else None
