"""The usage store interface and the in-process store (the default, one process only)."""

from __future__ import annotations

import functools
from collections import defaultdict, deque
from typing import Any, Protocol

from gateway.accounting.usage.record import UsageRecord
from gateway.governance.cost import micro_to_usd

FIELDS = ("requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens")
COST = "cost_micro_usd"  # an integer of millionths of a dollar, so HINCRBY stays exact
HASH_FIELDS = (*FIELDS, COST)
OTHER_MODEL = "other"  # the per-model fields of names that never routed (as the metrics' "other")


@functools.lru_cache(maxsize=4096)
def model_fields(model: str) -> tuple[str, ...]:
    """A model's per-model hash fields (``model|field``), in ``HASH_FIELDS`` order."""
    return tuple(f"{model}|{f}" for f in HASH_FIELDS)


def model_field(rec: UsageRecord) -> str:
    """The model part of the record's per-model hash fields."""
    return rec.model if rec.routed else OTHER_MODEL


def record_increments(rec: UsageRecord) -> tuple[int, int, int, int, int, int]:
    """The counters one record adds, in ``HASH_FIELDS`` order."""
    return (
        1,
        1 if rec.status >= 400 else 0,
        rec.prompt_tokens,
        rec.completion_tokens,
        rec.total_tokens,
        rec.cost_micro_usd,
    )


def _counters(h: dict[str, int]) -> dict[str, Any]:
    return {**{f: h.get(f, 0) for f in FIELDS}, "cost_usd": micro_to_usd(h.get(COST, 0))}


class BatchRejected(Exception):
    """The store answered but refused part of a batch (what was refused left no trace); ``lost`` is
    how many of its records are not fully written."""

    def __init__(self, cause: BaseException, lost: int) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause
        self.lost = lost


def usage_body(key: str, date: str, totals: dict[str, int], models: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The ``GET /v1/usage`` answer (docs/reference.md), ``cost_usd`` in dollars beside the five counters."""
    return {
        "object": "usage",
        "key": key,
        "date": date,
        **_counters(totals),
        "models": {m: _counters(v) for m, v in sorted(models.items())},
    }


def parse_hash(h: dict[str, str]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Split a usage hash (``field`` and ``model|field``) into totals and per-model counters."""
    totals: dict[str, int] = {}
    models: dict[str, dict[str, int]] = defaultdict(dict)
    for k, v in h.items():
        model, sep, field = k.rpartition("|")
        if sep:
            models[model][field] = int(v)
        else:
            totals[field] = int(v)
    return totals, dict(models)


class UsageStore(Protocol):
    """Where records end up. ``write`` is only ever called off the request path."""

    async def write(self, records: list[UsageRecord]) -> None: ...
    async def usage(self, key: str, day: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]: ...
    async def team_usage(self, team: str, day: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]: ...
    async def close(self) -> None: ...


class MemoryStore:
    """Counters in a dict and a capped log; per process, lost on restart (documented)."""

    def __init__(self, log_max_len: int = 10_000) -> None:
        self.hashes: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.teams: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.log: deque[UsageRecord] = deque(maxlen=log_max_len)

    def submit(self, rec: UsageRecord) -> None:
        """The request path's hand-off: in memory it is the write itself."""
        self.add(rec)

    def add(self, rec: UsageRecord) -> None:
        hashes = [self.hashes[(rec.key, rec.day)]]
        if rec.team:
            hashes.append(self.teams[(rec.team, rec.day)])
        model = model_field(rec)
        for f, mf, inc in zip(HASH_FIELDS, model_fields(model), record_increments(rec), strict=True):
            for h in hashes:
                h[f] += inc
                h[mf] += inc
        self.log.append(rec)

    async def write(self, records: list[UsageRecord]) -> None:
        for r in records:
            self.add(r)

    async def usage(self, key: str, day: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        return parse_hash({k: str(v) for k, v in self.hashes.get((key, day), {}).items()})

    async def team_usage(self, team: str, day: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        return parse_hash({k: str(v) for k, v in self.teams.get((team, day), {}).items()})

    async def close(self) -> None:
        return None
