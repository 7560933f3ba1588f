"""Per-subject rate limits and budgets: ``limits: {rpm, tpm, tokens_per_day, budget_usd}``
(docs/operations.md "Rate limits", README "Budgets in money").

The limiter is keyed by a *subject*: a name whose counters live under ``{prefix}rl:{<subject>}:…``.
A key is a subject (its name); a team is another (``team:<name>``), admitted and settled the same way.

Semantics (the same with Redis and in memory):

- ``rpm``: at most ``rpm`` admitted requests in any rolling window (60 s). Kept as an exact sliding
  log: one timestamp per admitted request in a sorted set. A fixed window would let 2x ``rpm``
  through across a boundary, and GCRA answers "when may the next one go" rather than "how many are
  left", which is what ``x-ratelimit-remaining-requests`` has to say; the log is exact, and bounded
  by ``rpm`` entries because refused requests are not recorded.
- ``tpm``: the window's tokens are kept in 60 buckets (1 s each for the default window). A log
  per token charge would cost memory per request for little gain; buckets cost a fixed 61 numbers.
  A charge counts for at least the window and at most one bucket longer (never less, so no
  rolling 60 s ever holds more than ``tpm``).
- ``tokens_per_day``: a counter for the current UTC day.
- Admission charges the caller's prompt estimate to TPM and to the day at once (so concurrent
  requests cannot all slip under the same remaining budget); ``settle`` later adds the difference
  to the real total. A positive difference (the completion) goes to the bucket and day of *now*,
  when those tokens were produced; a negative one is refunded from the admission's bucket/day if
  that is still counted, else dropped.
- A request needs at least one token of room: at exactly ``tpm`` used, a zero-token estimate is
  refused too, or a full key could go on sending requests whose cost is only known afterwards.
- Refused: 429 ``rate_limit_exceeded`` with OpenAI's wording and ``type`` (``requests`` or
  ``tokens``), an integer ``Retry-After`` (>= 1) and the ``x-ratelimit-*`` headers. When several
  limits are exceeded the one with the longest wait is reported, so Retry-After is enough for all;
  a prompt bigger than ``tpm`` or ``tokens_per_day`` can never pass and is reported as such.
- ``budget_usd: {day, month}``: dollars per UTC day and per UTC month, counted in whole micro-dollars
  (one hash per subject holding both windows). Admission *reserves* the request's highest possible
  cost (the caller's prompt estimate at the input price plus the completion budget at the output
  price) in both windows at once, atomically with the other limits, so concurrent requests on any
  number of replicas can never together pass the budget by more than one request's reservation;
  ``settle`` replaces the reservation with the real cost (a surplus is refunded from the windows it
  was reserved in, if they are still current; an excess is charged to the current ones). At least one
  micro-dollar of room is needed, so a spent budget also stops requests whose price is unknown.
  Beyond it: 429 ``insufficient_quota`` (OpenAI's code for an exhausted quota), ``Retry-After`` until
  the window resets (UTC midnight, or the first of the next month), and ``x-ratelimit-*-budget``
  headers in dollars for the window with the least room left.
- ``x-ratelimit-reset-*`` (OpenAI's duration format) is the time until the oldest counted
  request/token leaves the window, i.e. when ``remaining`` next grows. With a sliding log the
  literal "back to the initial state" is always about one window after the latest request and
  says nothing; the next-freed slot is what a client waiting on ``remaining: 0`` needs.

With Redis each admission is ONE Lua script (atomic, server ``TIME``, never worker clocks) over
four keys of the same hash slot (``{prefix}rl:{<subject>}:rpm|tpm|tpd|bud``, so Redis Cluster works),
each with a TTL. Redis down or slow (``REDIS_TIMEOUT``): the request is allowed (``allow``, no
headers) or refused with 503 ``limits_unavailable`` (``deny``: the gateway cannot tell whether the
key is over its limit, so 429 would be a lie), the failure is counted (``redis_failures``,
``on_failure``) and Redis is skipped for ``cooldown`` seconds so a silent Redis does not add its
timeout to every request. Settlements go through a bounded queue to one background task that
pipelines them; when the queue is full they are dropped and counted (``settle_dropped``).

Without Redis the state lives in this process: with ``--workers N`` or several replicas each
process enforces the limits on its own (N times the configured rate in total).

Teams (``teams: {T: {limits}}``): a key naming a team is admitted against its own limits and then
the team's, counted under the name ``team:T`` and shared by all the team's keys; both admissions
are settled. The two are separate scripts (a key's and its team's counters live in different
cluster slots), so a request the team refuses gets its token charge on the key refunded, but
still counts toward the key's ``rpm``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import itertools
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from gateway.config import Limits
from gateway.errors import GatewayError
from gateway.governance.cost import format_usd, micro_to_usd, usd_to_micro

log = logging.getLogger("switchyard.limits")

WINDOW = 60.0  # seconds: the rolling window of rpm and tpm
BUCKETS = 60  # token buckets per window
REDIS_TIMEOUT = 0.25  # seconds: longest wait for Redis on the request path
REDIS_COOLDOWN = 1.0  # seconds Redis is skipped after a failure
SETTLE_QUEUE = 10_000  # settlements waiting for Redis before new ones are dropped
SETTLE_BATCH = 256  # settlements per pipelined round trip
DAY_MS = 86_400_000
TEAM = "team:"  # the limiter name of a team's shared counters

RPM, TPM, TPD = "rpm", "tpm", "tpd"
BDAY, BMONTH = "bday", "bmonth"  # budget_usd.day, budget_usd.month
BUDGET_KINDS = (BDAY, BMONTH)

# UTC calendar from a day number (days since 1970-01-01), in integer arithmetic: the month index
# (year * 12 + month - 1) and the day number of the first day of the next month. Howard Hinnant's
# civil_from_days / days_from_civil (http://howardhinnant.github.io/date_algorithms.html).
_CALENDAR_LUA = """
local function month_of(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  local ny, nm = y, m + 1
  if nm > 12 then ny, nm = y + 1, 1 end
  local yy = ny - (nm <= 2 and 1 or 0)
  local nera = math.floor(yy / 400)
  local nyoe = yy - nera * 400
  local nmp = nm > 2 and nm - 3 or nm + 9
  local ndoy = math.floor((153 * nmp + 2) / 5)
  local ndoe = nyoe * 365 + math.floor(nyoe / 4) - math.floor(nyoe / 100) + ndoy
  return y * 12 + m - 1, nera * 146097 + ndoe - 719468
end
local function int(x) return string.format('%.0f', x) end
"""

_ADMIT_LUA = (
    _CALENDAR_LUA
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, tpm, tpd = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local prompt, window = tonumber(ARGV[4]), tonumber(ARGV[5])
local width, nb = tonumber(ARGV[6]), tonumber(ARGV[7])
local need = math.max(prompt, 1)
local cur = math.floor(now / width)
local day = math.floor(now / 86400000)
local failed, retry, large = '', 0, 0
local function fail(kind, wait, too_large)
  if too_large > large or (too_large == large and wait > retry) then failed, retry, large = kind, wait, too_large end
end

local r_used = 0
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  r_used = redis.call('ZCARD', KEYS[1])
  if r_used >= rpm then
    local e = redis.call('ZRANGE', KEYS[1], r_used - rpm, r_used - rpm, 'WITHSCORES')
    fail('rpm', tonumber(e[2]) + window - now, 0)
  end
end

local t_used, buckets = 0, {}
if tpm > 0 then
  local h = redis.call('HGETALL', KEYS[2])
  for i = 1, #h, 2 do
    local b, v = tonumber(h[i]), tonumber(h[i + 1])
    if b < cur - nb then
      redis.call('HDEL', KEYS[2], h[i])
    else
      t_used = t_used + v
      buckets[#buckets + 1] = {b, v}
    end
  end
  table.sort(buckets, function(x, y) return x[1] < y[1] end)
  if need > tpm then
    fail('tpm', window, 1)
  elseif t_used + need > tpm then
    local left = t_used
    for _, bv in ipairs(buckets) do
      left = left - bv[2]
      if left + need <= tpm then
        fail('tpm', (bv[1] + nb + 1) * width - now, 0)
        break
      end
    end
  end
end

local d_used = 0
if tpd > 0 then
  local d = redis.call('HMGET', KEYS[3], 'day', 'used')
  if tonumber(d[1]) == day then d_used = tonumber(d[2]) or 0 end
  if need > tpd then
    fail('tpd', (day + 1) * 86400000 - now, 1)
  elseif d_used + need > tpd then
    fail('tpd', (day + 1) * 86400000 - now, 0)
  end
end

local bday, bmon, reserve = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local bneed = math.max(reserve, 1)
local bd_used, bm_used, month, month_end = 0, 0, 0, 0
if bday > 0 or bmon > 0 then
  month, month_end = month_of(day)
  local b = redis.call('HMGET', KEYS[4], 'd', 'du', 'm', 'mu')
  if tonumber(b[1]) == day then bd_used = tonumber(b[2]) or 0 end
  if tonumber(b[3]) == month then bm_used = tonumber(b[4]) or 0 end
  if bday > 0 then
    if bneed > bday then fail('bday', (day + 1) * 86400000 - now, 1)
    elseif bd_used + bneed > bday then fail('bday', (day + 1) * 86400000 - now, 0) end
  end
  if bmon > 0 then
    if bneed > bmon then fail('bmonth', month_end * 86400000 - now, 1)
    elseif bm_used + bneed > bmon then fail('bmonth', month_end * 86400000 - now, 0) end
  end
end

local allowed = 0
if failed == '' then
  allowed = 1
  if rpm > 0 then
    redis.call('ZADD', KEYS[1], now, ARGV[8])
    redis.call('PEXPIRE', KEYS[1], window + 1000)
    r_used = r_used + 1
  end
  if tpm > 0 and prompt > 0 then
    redis.call('HINCRBY', KEYS[2], cur, prompt)
    buckets[#buckets + 1] = {cur, prompt}
    t_used = t_used + prompt
  end
  if tpm > 0 then redis.call('PEXPIRE', KEYS[2], (nb + 2) * width + 1000) end
  if tpd > 0 then
    if d_used == 0 then redis.call('HSET', KEYS[3], 'day', day, 'used', prompt)
    else redis.call('HINCRBY', KEYS[3], 'used', prompt) end
    redis.call('EXPIRE', KEYS[3], 172800)
    d_used = d_used + prompt
  end
  if bday > 0 or bmon > 0 then
    bd_used, bm_used = bd_used + reserve, bm_used + reserve
    redis.call('HSET', KEYS[4], 'd', day, 'du', int(bd_used), 'm', month, 'mu', int(bm_used))
    redis.call('PEXPIRE', KEYS[4], (month_end + 1) * 86400000 - now)
  end
end

local r_reset, t_reset = 0, 0
if rpm > 0 then
  local o = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if o[2] then r_reset = tonumber(o[2]) + window - now end
end
for _, bv in ipairs(buckets) do
  if bv[2] > 0 then
    t_reset = (bv[1] + nb + 1) * width - now
    break
  end
end
return {allowed, failed, retry, large, r_used, r_reset, t_used, t_reset, d_used, day, cur,
        int(bd_used), int(bm_used), month, month_end, now}
"""
)

_SETTLE_LUA = (
    _CALENDAR_LUA
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local delta, bucket, day = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local width, nb = tonumber(ARGV[4]), tonumber(ARGV[5])
local cur, today = math.floor(now / width), math.floor(now / 86400000)
if ARGV[6] == '1' then
  if delta > 0 then
    redis.call('HINCRBY', KEYS[1], cur, delta)
    redis.call('PEXPIRE', KEYS[1], (nb + 2) * width + 1000)
  elseif bucket >= cur - nb then
    local v = tonumber(redis.call('HGET', KEYS[1], bucket) or '0')
    if v > 0 then redis.call('HSET', KEYS[1], bucket, math.max(v + delta, 0)) end
  end
end
if ARGV[7] == '1' then
  local d = tonumber(redis.call('HGET', KEYS[2], 'day') or '-1')
  if delta > 0 then
    if d == today then redis.call('HINCRBY', KEYS[2], 'used', delta)
    else redis.call('HSET', KEYS[2], 'day', today, 'used', delta) end
    redis.call('EXPIRE', KEYS[2], 172800)
  elseif d == day then
    local u = redis.call('HINCRBY', KEYS[2], 'used', delta)
    if u < 0 then redis.call('HSET', KEYS[2], 'used', 0) end
  end
end
local cost = tonumber(ARGV[9])
if ARGV[8] == '1' and cost ~= 0 then
  local bday, bmon = tonumber(ARGV[10]), tonumber(ARGV[11])
  local b = redis.call('HMGET', KEYS[3], 'd', 'du', 'm', 'mu')
  local d, du, m, mu = tonumber(b[1]) or -1, tonumber(b[2]) or 0, tonumber(b[3]) or -1, tonumber(b[4]) or 0
  if cost > 0 then
    -- Spent beyond the reservation: it counts in the windows of now.
    local month, month_end = month_of(today)
    if d == today then du = du + cost else d, du = today, cost end
    if m == month then mu = mu + cost else m, mu = month, cost end
    redis.call('HSET', KEYS[3], 'd', d, 'du', int(du), 'm', m, 'mu', int(mu))
    redis.call('PEXPIRE', KEYS[3], (month_end + 1) * 86400000 - now)
  elseif d == bday or m == bmon then
    -- The unspent part of the reservation goes back to the windows it was taken from, if still current.
    if d == bday then redis.call('HSET', KEYS[3], 'du', int(math.max(du + cost, 0))) end
    if m == bmon then redis.call('HSET', KEYS[3], 'mu', int(math.max(mu + cost, 0))) end
  end
end
return 1
"""
)


@dataclass(slots=True)
class Admission:
    """An admitted request: the headers for its response and what ``settle`` reconciles.

    ``headers`` is shared by the no-limits admission; callers must not mutate it.
    """

    headers: list[tuple[bytes, bytes]]
    key_name: str = ""
    charged: int = 0  # prompt tokens charged at admission
    bucket: int = 0  # TPM bucket the charge went to
    day: int = 0  # UTC day (days since the epoch) the daily charge went to
    tpm: bool = False
    tpd: bool = False
    budget: bool = False  # a money budget applies: ``reserved`` is settled against the real cost
    reserved: int = 0  # micro-dollars reserved at admission
    month: int = 0  # UTC month (year * 12 + month - 1) the reservation went to
    settled: bool = field(default=False, compare=False)
    also: Admission | None = field(default=None, compare=False)  # the team's admission, settled with it


EMPTY = Admission([])


@dataclass(slots=True)
class Verdict:
    """The outcome of one admission check, from Lua or from memory."""

    allowed: bool
    failed: str  # "", RPM, TPM or TPD
    retry_ms: int
    too_large: bool
    requests: int  # requests in the window (this one included when allowed)
    requests_reset_ms: int
    tokens: int  # tokens in the window (this one's estimate included when allowed)
    tokens_reset_ms: int
    day_tokens: int
    day: int
    bucket: int
    budget_day: int = 0  # micro-dollars spent or reserved today (this request's reservation included when allowed)
    budget_month: int = 0  # the same for the month
    month: int = 0  # UTC month index
    month_end: int = 0  # day number of the first day of the next month
    now_ms: int = 0


def format_duration(ms: float) -> str:
    """OpenAI's ``x-ratelimit-reset-*`` format: ``120ms``, ``1s``, ``6m0s``, ``1h2m3.5s``.

    https://platform.openai.com/docs/guides/rate-limits#rate-limits-in-headers (samples ``1s``, ``6m0s``);
    sub-second values are shown as ``12ms`` and longer ones as ``14h29m11.04s`` in OpenAI's answers.
    """
    ms = max(0, math.ceil(ms))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, frac = divmod(rest, 1000)
    sec = f"{s}.{frac:03d}".rstrip("0") if frac else str(s)
    return (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + f"{sec}s"


def retry_after(ms: float) -> int:
    """Whole seconds (>= 1), rounded up so a client that waits exactly this long gets in."""
    return max(1, math.ceil(ms / 1000))


_NAMES = {
    RPM: "requests per min (RPM)",
    TPM: "tokens per min (TPM)",
    TPD: "tokens per day (TPD)",
}


def _refusal(key_name: str, limits: Limits, prompt: int, v: Verdict, what: str = "key") -> str:
    """OpenAI's 429 wording, with the subject's name where OpenAI names the organization."""
    limit = {RPM: limits.rpm, TPM: limits.tpm, TPD: limits.tokens_per_day}[v.failed]
    who = f"team '{key_name[len(TEAM) :]}'" if key_name.startswith(TEAM) else f"key '{key_name}'"
    if v.too_large:
        return (
            f"Request too large for {who} on {_NAMES[v.failed]}: Limit {limit}, Requested {prompt}. "
            "The input or output tokens must be reduced in order to run successfully."
        )
    used, requested = {RPM: (v.requests, 1), TPM: (v.tokens, prompt), TPD: (v.day_tokens, prompt)}[v.failed]
    return (
        f"Rate limit reached for {who} on {_NAMES[v.failed]}: Limit {limit}, Used {used}, "
        f"Requested {requested}. Please try again in {format_duration(v.retry_ms)}."
    )


def budget_micro(limits: Limits) -> tuple[int, int]:
    """The configured budgets in whole micro-dollars, ``(day, month)``; 0 where none is set."""
    b = limits.budget_usd
    if b is None:
        return 0, 0
    return (usd_to_micro(b.day) if b.day is not None else 0, usd_to_micro(b.month) if b.month is not None else 0)


def _budget_refusal(name: str, limits: Limits, reserve: int, v: Verdict, what: str) -> str:
    day, month = budget_micro(limits)
    window, limit, used = ("day", day, v.budget_day) if v.failed == BDAY else ("month", month, v.budget_month)
    need = max(reserve, 1)
    if v.too_large:
        return (
            f"Request too large for the budget of {what} '{name}': Limit ${format_usd(limit, 0)} per {window} (UTC), "
            f"and this request may cost up to ${format_usd(need, 0)} (its prompt at the input price plus its "
            "completion budget at the output price). Lower max_tokens (or the prompt) to run it."
        )
    return (
        f"You exceeded your current quota: {what} '{name}' has spent or reserved ${format_usd(used, 0)} of its "
        f"${format_usd(limit, 0)} budget per {window} (UTC), and this request may cost up to ${format_usd(need, 0)}. "
        f"The budget resets in {format_duration(v.retry_ms)}."
    )


def _budget_windows(limits: Limits, v: Verdict) -> list[tuple[str, int, int, int]]:
    """``(window, limit, used, ms until reset)`` for each configured budget window."""
    day, month = budget_micro(limits)
    out = []
    if day:
        out.append(("day", day, v.budget_day, (v.day + 1) * DAY_MS - v.now_ms))
    if month:
        out.append(("month", month, v.budget_month, v.month_end * DAY_MS - v.now_ms))
    return out


def _headers(limits: Limits, v: Verdict) -> list[tuple[bytes, bytes]]:
    h: list[tuple[bytes, bytes]] = []
    if limits.rpm is not None:
        h.append((b"x-ratelimit-limit-requests", str(limits.rpm).encode()))
        h.append((b"x-ratelimit-remaining-requests", str(max(0, limits.rpm - v.requests)).encode()))
        h.append((b"x-ratelimit-reset-requests", format_duration(v.requests_reset_ms).encode()))
    if limits.tpm is not None:
        h.append((b"x-ratelimit-limit-tokens", str(limits.tpm).encode()))
        h.append((b"x-ratelimit-remaining-tokens", str(max(0, limits.tpm - v.tokens)).encode()))
        h.append((b"x-ratelimit-reset-tokens", format_duration(v.tokens_reset_ms).encode()))
    windows = _budget_windows(limits, v)
    if windows:
        # The window with the least room left is the one that binds (the day's on a tie).
        _, limit, used, reset = min(windows, key=lambda w: w[1] - w[2])
        h.append((b"x-ratelimit-limit-budget", format_usd(limit, 0).encode()))
        h.append((b"x-ratelimit-remaining-budget", format_usd(max(0, limit - used), 0).encode()))
        h.append((b"x-ratelimit-reset-budget", format_duration(reset).encode()))
    return h


def _tighter(a: list[tuple[bytes, bytes]], b: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Per family (requests, tokens), the headers of whichever admission has less room left."""
    out: list[tuple[bytes, bytes]] = []
    for family in (b"-requests", b"-tokens"):
        fa = [h for h in a if h[0].endswith(family)]
        fb = [h for h in b if h[0].endswith(family)]
        if fa and fb:
            out += fb if _remaining(fb) < _remaining(fa) else fa
        else:
            out += fa or fb
    return out


def _remaining(headers: list[tuple[bytes, bytes]]) -> int:
    return next(int(v) for k, v in headers if k.startswith(b"x-ratelimit-remaining-"))


def has_limits(limits: Limits) -> bool:
    return (
        limits.rpm is not None
        or limits.tpm is not None
        or limits.tokens_per_day is not None
        or limits.budget_usd is not None
    )


@functools.lru_cache(maxsize=64)
def month_of(day: int) -> tuple[int, int]:
    """The UTC month index (``year * 12 + month - 1``) of a day number, and the day number of the
    next month's first day (the Lua scripts' ``month_of``)."""
    d = _EPOCH + dt.timedelta(days=day)
    nxt = dt.date(d.year + d.month // 12, d.month % 12 + 1, 1)
    return d.year * 12 + d.month - 1, (nxt - _EPOCH).days


_EPOCH = dt.date(1970, 1, 1)


class _KeyState:
    """One subject's counters in memory (the Lua script's four keys)."""

    __slots__ = ("bd", "bd_used", "bm", "bm_used", "buckets", "day", "day_used", "requests")

    def __init__(self) -> None:
        self.requests: deque[int] = deque()  # admission times (ms), oldest first
        self.buckets: dict[int, int] = {}  # bucket index -> tokens
        self.day = -1
        self.day_used = 0
        self.bd, self.bd_used = -1, 0  # budget: day number and micro-dollars spent or reserved
        self.bm, self.bm_used = -1, 0  # budget: month index and the same


class MemoryLimits:
    """The Lua scripts' semantics over per-process state (see the module docstring)."""

    def __init__(self, window_ms: int, width: int, nb: int) -> None:
        self.window, self.width, self.nb = window_ms, width, nb
        # Bounded by the configured subjects: only those with limits get here.
        self.keys: dict[str, _KeyState] = {}

    def check(self, key_name: str, limits: Limits, prompt: int, reserve: int = 0) -> Verdict:
        now = int(time.time() * 1000)
        st = self.keys.get(key_name)
        if st is None:
            st = self.keys[key_name] = _KeyState()
        need = max(prompt, 1)
        cur, day = now // self.width, now // DAY_MS
        fails: list[tuple[int, int, str]] = []  # (too_large, wait, kind): the largest is reported

        reqs = st.requests
        while reqs and reqs[0] <= now - self.window:
            reqs.popleft()
        if limits.rpm is not None and len(reqs) >= limits.rpm:
            fails.append((0, reqs[len(reqs) - limits.rpm] + self.window - now, RPM))

        for b in [b for b in st.buckets if b < cur - self.nb]:
            del st.buckets[b]
        used = sum(st.buckets.values())
        if limits.tpm is not None:
            if need > limits.tpm:
                fails.append((1, self.window, TPM))
            elif used + need > limits.tpm:
                left = used
                for b in sorted(st.buckets):
                    left -= st.buckets[b]
                    if left + need <= limits.tpm:
                        fails.append((0, (b + self.nb + 1) * self.width - now, TPM))
                        break

        if st.day != day:
            st.day, st.day_used = day, 0
        if limits.tokens_per_day is not None and st.day_used + need > limits.tokens_per_day:
            fails.append((int(need > limits.tokens_per_day), (day + 1) * DAY_MS - now, TPD))

        bday, bmon = budget_micro(limits)
        month, month_end = month_of(day) if bday or bmon else (0, 0)
        if bday or bmon:
            if st.bd != day:
                st.bd, st.bd_used = day, 0
            if st.bm != month:
                st.bm, st.bm_used = month, 0
            bneed = max(reserve, 1)
            if bday and st.bd_used + bneed > bday:
                fails.append((int(bneed > bday), (day + 1) * DAY_MS - now, BDAY))
            if bmon and st.bm_used + bneed > bmon:
                fails.append((int(bneed > bmon), month_end * DAY_MS - now, BMONTH))

        if not fails:
            if limits.rpm is not None:
                reqs.append(now)
            if limits.tpm is not None and prompt > 0:
                st.buckets[cur] = st.buckets.get(cur, 0) + prompt
                used += prompt
            if limits.tokens_per_day is not None:
                st.day_used += prompt
            if bday or bmon:
                st.bd_used += reserve
                st.bm_used += reserve
        large, wait, kind = max(fails) if fails else (0, 0, "")
        oldest = min((b for b, v in st.buckets.items() if v > 0), default=None)
        return Verdict(
            allowed=not fails,
            failed=kind,
            retry_ms=wait,
            too_large=bool(large),
            requests=len(reqs),
            requests_reset_ms=reqs[0] + self.window - now if reqs else 0,
            tokens=used,
            tokens_reset_ms=0 if oldest is None else (oldest + self.nb + 1) * self.width - now,
            day_tokens=st.day_used,
            day=day,
            bucket=cur,
            budget_day=st.bd_used if st.bd == day else 0,
            budget_month=st.bm_used if st.bm == month else 0,
            month=month,
            month_end=month_end,
            now_ms=now,
        )

    def settle(self, a: Admission, delta: int, cost_delta: int = 0) -> None:
        st = self.keys.get(a.key_name)
        if st is None:
            return
        now = int(time.time() * 1000)
        cur, today = now // self.width, now // DAY_MS
        if a.tpm and delta:
            if delta > 0:
                st.buckets[cur] = st.buckets.get(cur, 0) + delta
            elif a.bucket >= cur - self.nb and a.bucket in st.buckets:
                st.buckets[a.bucket] = max(0, st.buckets[a.bucket] + delta)
        if a.tpd and delta:
            if delta > 0:
                if st.day != today:
                    st.day, st.day_used = today, 0
                st.day_used += delta
            elif st.day == a.day:
                st.day_used = max(0, st.day_used + delta)
        if a.budget and cost_delta:
            if cost_delta > 0:
                month, _ = month_of(today)
                if st.bd != today:
                    st.bd, st.bd_used = today, 0
                if st.bm != month:
                    st.bm, st.bm_used = month, 0
                st.bd_used += cost_delta
                st.bm_used += cost_delta
            else:
                if st.bd == a.day:
                    st.bd_used = max(0, st.bd_used + cost_delta)
                if st.bm == a.month:
                    st.bm_used = max(0, st.bm_used + cost_delta)


class Limiter:
    """Admission checks for keys with limits; Redis-backed when ``redis_url`` is set."""

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        when_down: str,
        *,
        window: float = WINDOW,
        timeout: float = REDIS_TIMEOUT,
        cooldown: float = REDIS_COOLDOWN,
        on_failure: Callable[[], None] | None = None,
        on_budget: Callable[[str, str, float, float], None] | None = None,
    ) -> None:
        if when_down not in ("allow", "deny"):
            raise ValueError("when_down must be 'allow' or 'deny'")
        self.prefix = prefix
        self.when_down = when_down
        self.window_ms = max(1, round(window * 1000))
        self.width = max(1, self.window_ms // BUCKETS)
        self.nb = math.ceil(self.window_ms / self.width)
        self.timeout = timeout
        self.cooldown = cooldown
        self.on_failure = on_failure
        # (subject, window, dollars spent or reserved, window end as unix seconds) after each admission
        # of a subject with a budget: the switchyard_budget_* gauges.
        self.on_budget = on_budget
        self.redis_failures = 0  # wired to switchyard_limits_redis_failures_total
        self.settle_dropped = 0
        self.memory = MemoryLimits(self.window_ms, self.width, self.nb)
        self._skip_until = 0.0
        self._healthy = True
        self._ids = itertools.count()
        self._uid = os.urandom(6).hex()  # log members must be unique across processes
        self._names: dict[str, tuple[str, str, str, str]] = {}
        self._queue: asyncio.Queue[tuple[Admission, int, int]] = asyncio.Queue(SETTLE_QUEUE)
        self._worker: asyncio.Task[None] | None = None
        self._redis: Any = None
        self._url = redis_url
        if redis_url:
            self._redis = Redis.from_url(redis_url, **self._options())
            self._register()

    def _options(self) -> dict[str, Any]:
        return {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "retry": Retry(NoBackoff(), 0),  # a retry would only stretch the wait past ``timeout``
            "health_check_interval": 0,
            "driver_info": None,  # no CLIENT SETINFO: fewer round trips when a burst opens connections
        }

    def _register(self) -> None:
        self._admit_script = self._redis.register_script(_ADMIT_LUA)
        self._settle_script = self._redis.register_script(_SETTLE_LUA)

    async def _use_cluster_if_needed(self) -> None:
        """A Redis Cluster needs the cluster client (a key's three limit keys share one slot)."""
        try:
            info = await self._redis.info("cluster")
        except ResponseError:
            return  # INFO denied or renamed: only a cluster needs it, assume standalone
        if not info.get("cluster_enabled"):
            return
        plain = self._redis
        opts = self._options()
        opts.pop("health_check_interval")
        self._redis = RedisCluster.from_url(self._url, **opts)
        await self._redis.initialize()
        self._register()
        await plain.aclose()

    @property
    def uses_redis(self) -> bool:
        return self._redis is not None

    async def start(self) -> None:
        if self._redis is None or self._worker is not None:
            return
        self._worker = asyncio.create_task(self._settle_loop(), name="limits-settle")
        try:
            # Loaded up front so a burst of first requests does not each hit NOSCRIPT and reload.
            async with asyncio.timeout(max(1.0, 4 * self.timeout)):
                await self._use_cluster_if_needed()
                for script in (self._admit_script, self._settle_script):
                    script.sha = await self._redis.script_load(script.script)
        except (RedisError, OSError, TimeoutError) as e:
            self._failed(e)

    async def flush(self, timeout: float = 1.0) -> bool:
        """Wait (bounded) until queued settlements are written; False if they were not all done in time."""
        if self._worker is None:
            return self._queue.empty()
        try:
            async with asyncio.timeout(timeout):
                await self._queue.join()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if self._worker is not None:
            await self.flush(max(1.0, 4 * self.timeout))
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        if self._redis is not None:
            await self._redis.aclose()

    # -- the request path --------------------------------------------------------------------
    async def admit(
        self,
        key_name: str,
        limits: Limits,
        prompt_tokens: int,
        cost: int = 0,
        *,
        team: str | None = None,
        team_limits: Limits | None = None,
        what: str = "key",
    ) -> Admission:
        """Admit one request of ``prompt_tokens`` (estimated) that may cost up to ``cost`` micro-dollars
        against the key's limits and then its team's; raise 429 (503 when Redis is down, ``deny``)."""
        own = await self._admit(key_name, limits, prompt_tokens, cost, what=what)
        if not team or team_limits is None or not has_limits(team_limits):
            return own
        try:
            shared = await self._admit(TEAM + team, team_limits, prompt_tokens, cost, what="team")
        except GatewayError:
            self.settle(own, 0)  # refund the key's charges: the request never ran
            raise
        if own is EMPTY:
            return shared
        if shared is not EMPTY:
            own.also = shared
            own.headers = _tighter(own.headers, shared.headers)
        return own

    async def _admit(
        self, key_name: str, limits: Limits, prompt_tokens: int, cost: int = 0, *, what: str = "key"
    ) -> Admission:
        if not has_limits(limits):
            return EMPTY
        prompt = max(0, prompt_tokens)
        reserve = max(0, cost)
        if self._redis is None:
            v = self.memory.check(key_name, limits, prompt, reserve)
        else:
            maybe = await self._redis_check(key_name, limits, prompt, reserve)
            if maybe is None:
                return self._redis_down()
            v = maybe
        headers = _headers(limits, v)
        budget = limits.budget_usd is not None
        if budget and self.on_budget is not None:
            for window, _, used, reset_ms in _budget_windows(limits, v):
                self.on_budget(key_name, window, micro_to_usd(used), (v.now_ms + reset_ms) / 1000)
        if not v.allowed:
            h = {k.decode(): val.decode() for k, val in headers}
            h["retry-after"] = str(retry_after(v.retry_ms))
            if v.failed in BUDGET_KINDS:
                raise GatewayError(
                    429,
                    _budget_refusal(key_name, limits, reserve, v, what),
                    type="insufficient_quota",
                    code="insufficient_quota",
                    headers=h,
                )
            raise GatewayError(
                429,
                _refusal(key_name, limits, prompt, v, what),
                type="requests" if v.failed == RPM else "tokens",
                code="rate_limit_exceeded",
                headers=h,
            )
        return Admission(
            headers,
            key_name,
            charged=prompt,
            bucket=v.bucket,
            day=v.day,
            tpm=limits.tpm is not None,
            tpd=limits.tokens_per_day is not None,
            budget=budget,
            reserved=reserve if budget else 0,
            month=v.month,
        )

    def settle(self, admission: Admission, total_tokens: int, cost: int = 0) -> None:
        """Reconcile the prompt estimate with the real total and the reserved cost with the real one
        (micro-dollars); never waits (Redis writes are queued)."""
        if admission.also is not None:
            self.settle(admission.also, total_tokens, cost)
        if admission.settled or not (admission.tpm or admission.tpd or admission.budget):
            return
        admission.settled = True
        delta = max(0, total_tokens) - admission.charged if (admission.tpm or admission.tpd) else 0
        cost_delta = max(0, cost) - admission.reserved if admission.budget else 0
        if delta == 0 and cost_delta == 0:
            return
        if self._redis is None:
            self.memory.settle(admission, delta, cost_delta)
            return
        try:
            self._queue.put_nowait((admission, delta, cost_delta))
        except asyncio.QueueFull:
            self.settle_dropped += 1

    # -- Redis ---------------------------------------------------------------------------------
    def _keys(self, key_name: str) -> tuple[str, str, str, str]:
        keys = self._names.get(key_name)
        if keys is None:
            # The braces are a Redis Cluster hash tag: all of one subject's limit keys share a slot.
            base = f"{self.prefix}rl:{{{key_name}}}:"
            keys = self._names[key_name] = (base + "rpm", base + "tpm", base + "tpd", base + "bud")
        return keys

    async def _redis_check(self, key_name: str, limits: Limits, prompt: int, reserve: int = 0) -> Verdict | None:
        if time.monotonic() < self._skip_until:
            return None
        bday, bmon = budget_micro(limits)
        args = (
            limits.rpm or 0,
            limits.tpm or 0,
            limits.tokens_per_day or 0,
            prompt,
            self.window_ms,
            self.width,
            self.nb,
            f"{self._uid}:{next(self._ids)}",
            bday,
            bmon,
            reserve,
        )
        try:
            async with asyncio.timeout(self.timeout):
                r = await self._admit_script(keys=self._keys(key_name), args=args)
        except (RedisError, OSError, TimeoutError) as e:
            self._failed(e)
            return None
        if not self._healthy:
            log.warning("limits: Redis is back")
            self._healthy = True
        return Verdict(
            allowed=r[0] == 1,
            failed=r[1].decode() if isinstance(r[1], bytes) else str(r[1]),
            retry_ms=int(r[2]),
            too_large=r[3] == 1,
            requests=int(r[4]),
            requests_reset_ms=int(r[5]),
            tokens=int(r[6]),
            tokens_reset_ms=int(r[7]),
            day_tokens=int(r[8]),
            day=int(r[9]),
            bucket=int(r[10]),
            budget_day=int(r[11]),
            budget_month=int(r[12]),
            month=int(r[13]),
            month_end=int(r[14]),
            now_ms=int(r[15]),
        )

    def _failed(self, e: BaseException) -> None:
        if self._healthy:
            # Once per outage, not once per request.
            log.warning("limits: Redis unavailable (%s); when_down=%s applies", type(e).__name__, self.when_down)
        self._healthy = False
        self.redis_failures += 1
        self._skip_until = time.monotonic() + self.cooldown
        if self.on_failure is not None:
            self.on_failure()

    def _redis_down(self) -> Admission:
        if self.when_down == "allow":
            return EMPTY
        raise GatewayError(
            503,
            "Rate limits cannot be checked right now (the limits store is unreachable); please retry shortly.",
            code="limits_unavailable",
            headers={"retry-after": str(retry_after(self.cooldown * 1000))},
        )

    async def _settle_loop(self) -> None:
        q = self._queue
        while True:
            batch = [await q.get()]
            while len(batch) < SETTLE_BATCH and not q.empty():
                batch.append(q.get_nowait())
            try:
                await self._settle_batch(batch)
            except Exception:  # the worker must outlive any one bad batch
                self.settle_dropped += len(batch)
                log.exception("limits: settlement batch failed")
            finally:
                for _ in batch:
                    q.task_done()

    async def _settle_batch(self, batch: list[tuple[Admission, int, int]]) -> None:
        assert self._redis is not None
        if time.monotonic() < self._skip_until:
            self.settle_dropped += len(batch)
            return
        pipe = self._redis.pipeline(transaction=False)
        for a, delta, cost_delta in batch:
            _, tpm_key, tpd_key, bud_key = self._keys(a.key_name)
            args = (
                delta if a.tpm or a.tpd else 0,
                a.bucket,
                a.day,
                self.width,
                self.nb,
                int(a.tpm and delta != 0),
                int(a.tpd and delta != 0),
                int(a.budget),
                cost_delta,
                a.day,
                a.month,
            )
            await self._settle_script(keys=(tpm_key, tpd_key, bud_key), args=args, client=pipe)
        try:
            # Off the request path, so a batch may take longer than one admission.
            async with asyncio.timeout(max(1.0, 4 * self.timeout)):
                await pipe.execute()
        except (RedisError, OSError, TimeoutError) as e:
            self.settle_dropped += len(batch)
            self._failed(e)
