"""What an admission answers: its ``Verdict``, the ``x-ratelimit-*`` headers, OpenAI's 429 wording,
and the small calendar and budget arithmetic the memory and Redis limiters share.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass, field

from gateway.config import Limits
from gateway.governance.cost import format_usd, usd_to_micro

DAY_MS = 86_400_000
TEAM = "team:"  # the limiter name of a team's shared counters

RPM, TPM, TPD = "rpm", "tpm", "tpd"
BDAY, BMONTH = "bday", "bmonth"  # budget_usd.day, budget_usd.month
BUDGET_KINDS = (BDAY, BMONTH)


@dataclass(frozen=True, slots=True)
class TeamLimits:
    """A team's shared limits as admission takes them: built once per config, not per request."""

    name: str
    limits: Limits
    subject: str = field(init=False, compare=False)  # the limiter name of its counters

    def __post_init__(self) -> None:
        object.__setattr__(self, "subject", TEAM + self.name)


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


def refusal(key_name: str, limits: Limits, prompt: int, v: Verdict, what: str = "key") -> str:
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


def budget_refusal(name: str, limits: Limits, reserve: int, v: Verdict, what: str) -> str:
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


def budget_windows(limits: Limits, v: Verdict) -> list[tuple[str, int, int, int]]:
    """``(window, limit, used, ms until reset)`` for each configured budget window."""
    day, month = budget_micro(limits)
    out = []
    if day:
        out.append(("day", day, v.budget_day, (v.day + 1) * DAY_MS - v.now_ms))
    if month:
        out.append(("month", month, v.budget_month, v.month_end * DAY_MS - v.now_ms))
    return out


def headers_for(limits: Limits, v: Verdict) -> list[tuple[bytes, bytes]]:
    h: list[tuple[bytes, bytes]] = []
    if limits.rpm is not None:
        h.append((b"x-ratelimit-limit-requests", str(limits.rpm).encode()))
        h.append((b"x-ratelimit-remaining-requests", str(max(0, limits.rpm - v.requests)).encode()))
        h.append((b"x-ratelimit-reset-requests", format_duration(v.requests_reset_ms).encode()))
    if limits.tpm is not None:
        h.append((b"x-ratelimit-limit-tokens", str(limits.tpm).encode()))
        h.append((b"x-ratelimit-remaining-tokens", str(max(0, limits.tpm - v.tokens)).encode()))
        h.append((b"x-ratelimit-reset-tokens", format_duration(v.tokens_reset_ms).encode()))
    windows = budget_windows(limits, v)
    if windows:
        # The window with the least room left is the one that binds (the day's on a tie).
        _, limit, used, reset = min(windows, key=lambda w: w[1] - w[2])
        h.append((b"x-ratelimit-limit-budget", format_usd(limit, 0).encode()))
        h.append((b"x-ratelimit-remaining-budget", format_usd(max(0, limit - used), 0).encode()))
        h.append((b"x-ratelimit-reset-budget", format_duration(reset).encode()))
    return h


def tighter(a: list[tuple[bytes, bytes]], b: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
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
