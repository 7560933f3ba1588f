"""The Redis usage store: the documented layout (docs/operations.md "Redis layout"), written idempotently.

Layout (ops query it directly, so it must not change; nothing here expires it):

    {prefix}usage:{key}:{YYYYMMDD}   hash: the five FIELDS and ``cost_micro_usd``, and ``{model}|{field}``
                                     for each model
    {prefix}team:{team}:{YYYYMMDD}   hash: the same, summed over the team's keys
    {prefix}log                      stream: one entry per request, trimmed with ``XADD MAXLEN ~``

A batch of records is written as *units*, each one Lua script over one data key and one guard
key ``{prefix}seen:{<tag>}:{batch id}`` whose hash tag puts it in the data key's cluster slot.
The script claims the guard (``SET NX EX``) before it increments, so replaying a batch whose
reply was lost (a timeout after Redis applied it) counts it once. One data key per script means
no CROSSSLOT on Redis Cluster although the documented names carry no hash tag (hash tags:
https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags). Once a batch is
confirmed its guards are deleted in the next round trip, so guards only live while a batch is
in doubt; their TTL cleans up after a crash.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import Any

import orjson
from redis.crc import key_slot
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError, TryAgainError

from gateway.accounting.usage.record import UsageRecord
from gateway.accounting.usage.store import (
    HASH_FIELDS,
    BatchRejected,
    model_field,
    model_fields,
    parse_hash,
    record_increments,
)
from gateway.config import UsageConfig
from gateway.errors import GatewayError, store_unavailable
from gateway.governance.cost import format_usd
from gateway.wire.redis import ClientOptions, RedisHandle, guarded

log = logging.getLogger("switchyard.usage")

GUARD_TTL = 86_400  # seconds; only matters for guards a crash left behind
SOCKET_TIMEOUT = 2.0  # a hung Redis must fail a round trip fast; the writer retries
CONNECT_TIMEOUT = 1.0
_MAX_STALE_GUARDS = 10_000  # guards waiting for deletion; beyond this their TTL does the job
# Replies that say Redis cannot take writes right now, not that it refuses the batch: retried.
TRANSIENT_REPLIES = (OutOfMemoryError, ReadOnlyError, TryAgainError)

# Each script is all-or-nothing: a command that fails (a key of the wrong type, a counter that is
# not an integer) undoes what the script did before it, guard included, and returns the error, so
# a retry finds the unit unapplied rather than half-applied and skipped.

# KEYS[1] usage hash, KEYS[2] guard; ARGV[1] guard TTL, then field/increment pairs.
HASH_SCRIPT = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local fresh = {}
for i = 2, #ARGV, 2 do
  fresh[i] = redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0
  local r = redis.pcall('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  if type(r) == 'table' and r.err then
    for j = 2, i - 2, 2 do
      if fresh[j] then
        redis.call('HDEL', KEYS[1], ARGV[j])
      else
        local v = tonumber(ARGV[j + 1])
        if v ~= 0 then redis.call('HINCRBY', KEYS[1], ARGV[j], 0 - v) end
      end
    end
    redis.call('DEL', KEYS[2])
    return r
  end
end
return 1
"""

# KEYS[1] log stream, KEYS[2] guard; ARGV[1] guard TTL, ARGV[2] MAXLEN, ARGV[3] the entries, ARGV[4]
# their field names. Records arrive as one JSON array (packing 13 arguments per record cost more
# CPU than the rest of the request); field names once, as a second JSON array.
LOG_SCRIPT = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local names = cjson.decode(ARGV[4])
local added = {}
for _, rec in ipairs(cjson.decode(ARGV[3])) do
  local args = {}
  for i, name in ipairs(names) do
    args[#args + 1] = name
    args[#args + 1] = rec[i]
  end
  local r = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(args))
  if type(r) == 'table' and r.err then
    if #added > 0 then redis.call('XDEL', KEYS[1], unpack(added)) end
    redis.call('DEL', KEYS[2])
    return r
  end
  added[#added + 1] = r
end
return 1
"""

LOG_FIELDS = (
    "id",
    "ts",
    "key",
    "model",
    "provider",
    "endpoint",
    "status",
    "stream",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "ttft_ms",
    "estimated",
    "cost_usd",
    "cache_read_tokens",
    "cache_write_tokens",
    "priced",
)


_LOG_NAMES = orjson.dumps(LOG_FIELDS)


def usage_key(prefix: str, key: str, day: str) -> str:
    return f"{prefix}usage:{key}:{day}"


def log_values(rec: UsageRecord) -> tuple[str, ...]:
    """One log entry's values in ``LOG_FIELDS`` order (``ttft_ms`` empty when not a stream)."""
    return (
        rec.id,
        f"{rec.ts:.3f}",
        rec.key,
        rec.model,
        rec.provider,
        rec.endpoint,
        str(rec.status),
        "1" if rec.stream else "0",
        str(rec.prompt_tokens),
        str(rec.completion_tokens),
        f"{rec.latency_ms:.1f}",
        "" if rec.ttft_ms is None else f"{rec.ttft_ms:.1f}",
        "1" if rec.estimated else "0",
        format_usd(rec.cost_micro_usd),  # exact: "0.001500", never a float's rounding
        str(rec.cache_read_tokens),
        str(rec.cache_write_tokens),
        "1" if rec.priced else "0",
    )


def team_key(prefix: str, team: str, day: str) -> str:
    return f"{prefix}team:{team}:{day}"


def hash_increments(records: Iterable[UsageRecord], prefix: str) -> dict[str, dict[str, int]]:
    """Per usage hash (the key's, and its team's), the summed increments of a batch (zeros kept so
    every field always exists)."""
    return hash_units(records, prefix)[0]


def hash_units(records: Iterable[UsageRecord], prefix: str) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Per usage hash, the summed increments of a batch and how many records they carry.

    Summed per (hash, model) first: a batch is mostly one key and one model, so the field names
    are made once per batch, not per record."""
    sums: dict[str, dict[str, list[int]]] = {}
    counts: dict[str, int] = {}
    for r in records:
        incs = record_increments(r)
        model = model_field(r)
        hkeys = [usage_key(prefix, r.key, r.day)]
        if r.team:
            hkeys.append(team_key(prefix, r.team, r.day))
        for hkey in hkeys:
            counts[hkey] = counts.get(hkey, 0) + 1
            per_model = sums.setdefault(hkey, {})
            acc = per_model.get(model)
            per_model[model] = list(incs) if acc is None else [a + b for a, b in zip(acc, incs, strict=True)]
    out: dict[str, dict[str, int]] = {}
    for hkey, per_model in sums.items():
        h = dict.fromkeys(HASH_FIELDS, 0)
        for model, acc in per_model.items():
            h.update(zip(model_fields(model), acc, strict=True))
            for f, v in zip(HASH_FIELDS, acc, strict=True):
                h[f] += v
        out[hkey] = h
    return out, counts


@functools.cache
def _tag_for_slot(slot: int) -> str:
    # Any brace-free string hashing to ``slot``; CRC16 spreads "s<n>" over every slot quickly.
    for i in range(1 << 22):
        tag = f"s{i}"
        if key_slot(tag.encode()) == slot:
            return tag
    raise RuntimeError(f"no tag found for slot {slot}")  # unreachable for CRC16 over 16384 slots


def guard_key(prefix: str, data_key: str, batch_id: str) -> str:
    """The guard for one unit, in the same cluster slot as ``data_key``."""
    tag = data_key
    if "{" in data_key or "}" in data_key:
        # The key carries braces (a hash tag in the prefix or key name): hash to its slot explicitly.
        tag = _tag_for_slot(key_slot(data_key.encode()))
    return f"{prefix}seen:{{{tag}}}:{batch_id}"


class RedisStore:
    """Reads and idempotent batch writes; connects lazily and detects Redis Cluster by itself."""

    def __init__(
        self, cfg: UsageConfig, socket_timeout: float = SOCKET_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT
    ) -> None:
        self.prefix = cfg.prefix
        self.log_key = f"{cfg.prefix}log"
        self.log_max_len = cfg.log_max_len
        # The connection, shared with the other users of ``usage.redis_url`` (runtime keys, stored
        # responses, object owners). One quick retry on a dropped pooled connection; timeouts are
        # not retried here: the writer backs off and retries the whole batch itself.
        self.redis = RedisHandle(
            cfg.redis_url, ClientOptions(socket_timeout, connect_timeout, retries=1, decode_responses=True)
        )
        self._stale_guards: list[str] = []

    # -- connection ------------------------------------------------------------------------
    @property
    def cluster(self) -> bool | None:
        """Whether Redis is a cluster; None until the first connection."""
        return self.redis.cluster

    async def client(self) -> Any:
        return await self.redis.client()

    async def close(self) -> None:
        await self.redis.close()

    async def ping(self) -> bool:
        r = await self.client()
        return bool(await r.ping())

    # -- writes ----------------------------------------------------------------------------
    def _log_args(self, records: list[UsageRecord]) -> list[str | bytes]:
        return [str(GUARD_TTL), str(self.log_max_len), orjson.dumps([log_values(r) for r in records]), _LOG_NAMES]

    async def write_batch(self, batch_id: str, records: list[UsageRecord]) -> None:
        """Write one batch in one pipelined round trip (one per node on a cluster).

        Safe to call again with the same ``batch_id`` and records after any failure: units
        already applied are skipped, and a unit that failed left nothing behind. Raises the first
        connection-level failure as is (nothing is known about the rest); units Redis refused
        raise ``BatchRejected`` with the number of records they leave unwritten.
        """
        r = await self.client()
        pipe = r.pipeline(transaction=False)
        guards = []
        incs_by_key, counts = hash_units(records, self.prefix)
        carried = list(counts.values())  # records per unit, in pipeline order (the log: all)
        for hkey, incs in incs_by_key.items():
            g = guard_key(self.prefix, hkey, batch_id)
            guards.append(g)
            args = [str(GUARD_TTL)]
            for field, inc in incs.items():
                args += (field, str(inc))
            pipe.eval(HASH_SCRIPT, 2, hkey, g, *args)
        g = guard_key(self.prefix, self.log_key, batch_id)
        guards.append(g)
        pipe.eval(LOG_SCRIPT, 2, self.log_key, g, *self._log_args(records))
        stale = self._stale_guards[:]
        for s in stale:
            pipe.delete(s)  # one key per command: fine on a cluster
        results = await pipe.execute(raise_on_error=False)
        failed = [
            (res, n)
            for res, n in zip(results[: len(guards)], [*carried, len(records)], strict=True)
            if isinstance(res, Exception)
        ]
        if failed:
            for res, _ in failed:
                if not isinstance(res, ResponseError) or isinstance(res, TRANSIENT_REPLIES):
                    raise res
            log_failed = isinstance(results[len(guards) - 1], Exception)
            lost = len(records) if log_failed else sum(n for _, n in failed)
            raise BatchRejected(failed[0][0], lost)
        # Confirmed: this batch will never be replayed, so its guards can go.
        del self._stale_guards[: len(stale)]
        self._stale_guards.extend(guards)
        if len(self._stale_guards) > _MAX_STALE_GUARDS:
            del self._stale_guards[: len(self._stale_guards) - _MAX_STALE_GUARDS]

    # -- reads -----------------------------------------------------------------------------
    async def usage(self, key: str, day: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        return await self._read(usage_key(self.prefix, key, day))

    async def team_usage(self, team: str, day: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        return await self._read(team_key(self.prefix, team, day))

    async def _read(self, hkey: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        async with guarded(self.redis, "usage store read", _unavailable, log) as r:
            h = await r.hgetall(hkey)
        return parse_hash(h)


def _unavailable() -> GatewayError:
    return store_unavailable("The usage store is unavailable; try again shortly.", "usage_store_unavailable")
