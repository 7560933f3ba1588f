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

Modules: ``limiter`` (the ``Limiter``: Redis, the settlement queue, teams), ``memory`` (the same
semantics in the process), ``lua`` (the two scripts), ``verdict`` (admissions, headers, refusals).
"""

from gateway.pipeline.limits.limiter import REDIS_COOLDOWN, REDIS_TIMEOUT, WINDOW, Limiter, LimiterTuning
from gateway.pipeline.limits.lua import CALENDAR_LUA
from gateway.pipeline.limits.memory import MemoryLimits
from gateway.pipeline.limits.verdict import (
    EMPTY,
    TEAM,
    Admission,
    TeamLimits,
    Verdict,
    budget_micro,
    format_duration,
    has_limits,
    month_of,
    retry_after,
)

__all__ = [
    "CALENDAR_LUA",
    "EMPTY",
    "REDIS_COOLDOWN",
    "REDIS_TIMEOUT",
    "TEAM",
    "WINDOW",
    "Admission",
    "Limiter",
    "LimiterTuning",
    "MemoryLimits",
    "TeamLimits",
    "Verdict",
    "budget_micro",
    "format_duration",
    "has_limits",
    "month_of",
    "retry_after",
]
