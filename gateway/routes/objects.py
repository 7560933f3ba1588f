"""Routable object ids and who owns each object (docs/reference.md "Files, fine-tuning jobs and batches").

Ids. Every file, fine-tuning job and batch id the gateway hands out names its provider by itself,
so no database is needed to route it: ``<type prefix>sy<base32(provider NUL upstream id)>``, e.g.
``file-syn5ygk3tbneagm2lmmuwwcytdgezdg`` for ``openai`` / ``file-abc123``. Lowercase base32
without padding keeps the id to ``[a-z2-7]`` after its OpenAI-style prefix (``file-``, ``ftjob-``,
``batch_``), so it survives URLs, paths and every SDK; the NUL separator cannot occur in a
provider name, so names holding ``-`` are never ambiguous. Decoding accepts only the canonical
encoding of a configured provider and an upstream id of plain characters that starts with a
letter or digit (so it can never be ``.``/``..`` or leave its path segment). The encoding is
reversible, not secret: anyone can forge an id, which is why ownership below decides access.

Ownership. The key that created an object through the gateway owns it; files an upstream makes
for a job or batch (results, outputs, errors) are owned by the owner of that job or batch. In
Redis (when the usage store is Redis) one string per object, no expiry, so every worker and
replica agrees::

    {prefix}obj:{client id}   ->  the owning key's name

without Redis, a dict in this process (lost on restart; per worker, like the in-process usage
store).
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import re
from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.errors import GatewayError, store_unavailable
from gateway.wire.redis import guarded

log = logging.getLogger("switchyard.objects")

ID_MARK = "sy"
_MAX_ID_CHARS = 600  # a 256-character upstream id and a 128-character provider name, encoded
_UPSTREAM_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+=~-]{0,255}")


@dataclass(frozen=True, slots=True)
class Kind:
    """One type of relayed object: the name its errors use and its id prefix."""

    name: str
    prefix: str


FILE = Kind("File", "file-")
JOB = Kind("fine-tuning job", "ftjob-")
BATCH = Kind("Batch", "batch_")


def encode_id(kind: Kind, provider: str, upstream_id: str) -> str:
    return kind.prefix + ID_MARK + b32(f"{provider}\0{upstream_id}".encode())


_B32 = bytes.maketrans(bytes(range(32)), b"abcdefghijklmnopqrstuvwxyz234567")


def b32(raw: bytes) -> str:
    """``base64.b32encode(raw)``, lowercase, without its padding, in a few big-integer steps:
    Python 3.11's encoder loops in Python over every 5 bytes (about 9 us for a response id; this
    takes about 2). The bytes, padded to whole 5-byte blocks, are one integer of 5-bit groups;
    ``_spread`` moves each group into a byte of its own, which a table turns into its letter."""
    padded = raw + b"\0" * (-len(raw) % 5)
    groups = len(padded) * 8 // 5
    y = int.from_bytes(padded, "big")
    for keep, move, shift in _spread(groups):
        y = (y & keep) | ((y & move) << shift)
    return y.to_bytes(groups, "big").translate(_B32)[: (len(raw) * 8 + 4) // 5].decode("ascii")


@functools.lru_cache(maxsize=64)
def _spread(groups: int) -> tuple[tuple[int, int, int], ...]:
    """The steps that move group ``k`` (from the least significant) from bit ``5k`` to bit ``8k``:
    for each bit ``j`` of ``k``, highest first, the groups with it set move up ``3 * 2**j``. A group
    never lands on another (before each step group ``k`` sits at ``5k + 3 * (k rounded down to a
    multiple of 2**(j+1))``, which grows by at least 5 from one group to the next)."""
    steps = []
    for j in reversed(range(max(groups - 1, 1).bit_length())):
        keep = move = 0
        for k in range(groups):
            at = 5 * k + 3 * (k >> (j + 1) << (j + 1))
            if k >> j & 1:
                move |= 31 << at
            else:
                keep |= 31 << at
        steps.append((keep, move, 3 << j))
    return tuple(steps)


def decode_id(kind: Kind, client_id: str, providers: Container[str]) -> tuple[str, str] | None:
    """``(provider, upstream id)`` for an id this gateway issued for ``kind``, else None."""
    head = kind.prefix + ID_MARK
    if not client_id.startswith(head) or len(client_id) > _MAX_ID_CHARS or not client_id.isascii():
        return None
    body = client_id[len(head) :]
    try:
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
        provider, sep, upstream = raw.decode("utf-8").partition("\0")
    except (binascii.Error, ValueError):
        return None
    if not sep or provider not in providers or not _UPSTREAM_ID_RE.fullmatch(upstream):
        return None
    # One spelling per object: ownership records are keyed by the id string.
    if encode_id(kind, provider, upstream) != client_id:
        return None
    return provider, upstream


def not_found(kind: Kind, client_id: str) -> GatewayError:
    """The answer for an unknown id and for another key's object alike (nothing leaks), as OpenAI words it."""
    return GatewayError(404, f"No such {kind.name} object: {client_id}", param="id")


# -- ids inside relayed objects --------------------------------------------------------------------
# Each rewriter turns an upstream object into the client's view in place and returns the client
# ids of the files the upstream produced for it (they inherit the object's owner).


def _swap(obj: dict[str, Any], field: str, kind: Kind, provider: str) -> str | None:
    v = obj.get(field)
    if isinstance(v, str) and v:
        obj[field] = encode_id(kind, provider, v)
        return obj[field]
    return None


def _vendor(obj: dict[str, Any], field: str, provider: str) -> None:
    # ``vendor/model`` so the name can be used as is on the generation routes.
    v = obj.get(field)
    if isinstance(v, str) and v:
        obj[field] = f"{provider}/{v}"


def rewrite_file(obj: dict[str, Any], provider: str) -> list[str]:
    _swap(obj, "id", FILE, provider)
    return []


def rewrite_job(obj: dict[str, Any], provider: str) -> list[str]:
    _swap(obj, "id", JOB, provider)
    _swap(obj, "training_file", FILE, provider)
    _swap(obj, "validation_file", FILE, provider)
    _vendor(obj, "model", provider)
    _vendor(obj, "fine_tuned_model", provider)
    results = obj.get("result_files")
    if not isinstance(results, list):
        return []
    obj["result_files"] = [encode_id(FILE, provider, f) if isinstance(f, str) and f else f for f in results]
    return [f for f in obj["result_files"] if isinstance(f, str) and f]


def rewrite_batch(obj: dict[str, Any], provider: str) -> list[str]:
    _swap(obj, "id", BATCH, provider)
    _swap(obj, "input_file_id", FILE, provider)
    made = [_swap(obj, "output_file_id", FILE, provider), _swap(obj, "error_file_id", FILE, provider)]
    return [f for f in made if f]


def rewrite_checkpoint(obj: dict[str, Any], provider: str) -> list[str]:
    _swap(obj, "fine_tuning_job_id", JOB, provider)
    _vendor(obj, "fine_tuned_model_checkpoint", provider)
    return []


def rewrite_event(obj: dict[str, Any], provider: str) -> list[str]:
    return []  # event ids are cursors within their job, which the caller already reached


# -- ownership -------------------------------------------------------------------------------------


class Owners(Protocol):
    async def owners(self, client_ids: list[str]) -> list[str | None]: ...
    async def claim(self, pairs: Iterable[tuple[str, str]], keep_existing: bool = False) -> None: ...
    async def forget(self, client_id: str) -> None: ...


class MemoryOwners:
    """Owners in a dict: one process, lost on restart."""

    def __init__(self) -> None:
        self._owner: dict[str, str] = {}

    async def owners(self, client_ids: list[str]) -> list[str | None]:
        return [self._owner.get(c) for c in client_ids]

    async def claim(self, pairs: Iterable[tuple[str, str]], keep_existing: bool = False) -> None:
        for cid, owner in pairs:
            if keep_existing:
                self._owner.setdefault(cid, owner)
            else:
                self._owner[cid] = owner

    async def forget(self, client_id: str) -> None:
        self._owner.pop(client_id, None)


def _unavailable() -> GatewayError:
    return store_unavailable("The object ownership store is unavailable; try again shortly.", "store_unavailable")


class RedisOwners:
    """Owners in Redis through the usage store's connection (standalone or Cluster).

    One round trip per call: a non-transactional pipeline, which redis-py splits per node on a
    cluster (each key is its own slot). Any Redis failure is a 503: access is never decided
    without the record.
    """

    def __init__(self, store: Any) -> None:
        self.store = store  # a RedisStore: ``client()`` and ``prefix``
        self.prefix = store.prefix

    def key(self, client_id: str) -> str:
        return f"{self.prefix}obj:{client_id}"

    async def _run(self, fill: Any) -> list[Any]:
        async with guarded(self.store, "object ownership store", _unavailable, log) as r:
            pipe = r.pipeline(transaction=False)
            fill(pipe)
            return list(await pipe.execute())

    async def owners(self, client_ids: list[str]) -> list[str | None]:
        if not client_ids:
            return []

        def fill(pipe: Any) -> None:
            for c in client_ids:
                pipe.get(self.key(c))

        return await self._run(fill)

    async def claim(self, pairs: Iterable[tuple[str, str]], keep_existing: bool = False) -> None:
        todo = list(pairs)
        if not todo:
            return

        def fill(pipe: Any) -> None:
            for cid, owner in todo:
                pipe.set(self.key(cid), owner, nx=keep_existing)

        await self._run(fill)

    async def forget(self, client_id: str) -> None:
        await self._run(lambda pipe: pipe.delete(self.key(client_id)))
