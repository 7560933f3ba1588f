"""A runtime key as stored: its settings and sha256 digests (never the key itself), and how a new
secret is made. ``keystore.py`` stores and changes them, ``keycache.py`` serves them to requests.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.config import Limits

KEY_PREFIX = "sk-sy-"
KEY_BYTES = 32  # random bytes in a key (urlsafe base64: 43 characters)
ROTATION_FIELDS = ("digest", "prev_digest", "prev_until", "rotated_at", "updated_at")  # what a rotation writes


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


def rotated(cur: RuntimeKey, digest: str, grace: int, now: float) -> RuntimeKey:
    """``cur`` with the new secret's ``digest``; the old one stays accepted for ``grace`` seconds."""
    return replace(
        cur,
        digest=digest,
        prev_digest=cur.digest if grace > 0 else "",
        prev_until=now + grace if grace > 0 else 0.0,
        rotated_at=now,
        updated_at=now,
    )
