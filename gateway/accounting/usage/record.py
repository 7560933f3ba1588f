"""The one record every request with a valid key produces (docs/operations.md "Usage records")."""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.governance.cost import micro_to_usd

# A request's token counts are clamped into 0..MAX_TOKENS before they are recorded: far above any
# real request, and low enough that Redis' 64-bit HINCRBY sums can never overflow.
MAX_TOKENS = 2**32 - 1


@dataclass(slots=True)
class UsageRecord:
    id: str  # the request id
    key: str  # the key's configured name, never the key
    model: str  # the name the client asked for
    provider: str  # providers-map key ("" when the request never reached routing)
    endpoint: str  # the route path
    status: int  # HTTP status; 499 when the client went away
    stream: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    estimated: bool = False  # tokens counted by the gateway, not reported by the upstream
    ts: float = 0.0
    team: str = ""  # the key's team ("" when none): usage is also kept per team and day
    cost_micro_usd: int = 0  # whole millionths of a dollar (so sums stay exact); 0 when unpriced
    priced: bool = True  # False: tokens were used but no price is known for the model
    cache_read_tokens: int = 0  # prompt tokens read from the upstream's prompt cache (in prompt_tokens)
    cache_write_tokens: int = 0  # prompt tokens written to it (in prompt_tokens)
    # False when ``model`` never routed (refused before reaching a provider): the usage hashes then
    # count it under a placeholder, as the metrics do, so junk names cannot add fields without bound.
    routed: bool = True

    def __post_init__(self) -> None:
        if not self.ts:
            self.ts = time.time()

    @property
    def cost_usd(self) -> float:
        return micro_to_usd(self.cost_micro_usd)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def day(self) -> str:
        """The UTC day as ``YYYYMMDD`` (the Redis hash key's suffix)."""
        return utc_day(self.ts)


_DAYS: dict[int, str] = {}  # days since the epoch -> "YYYYMMDD": every record asks, few days occur


def utc_day(ts: float) -> str:
    """``time.strftime("%Y%m%d", time.gmtime(ts))``, remembered per day."""
    n = int(ts // 86400)
    day = _DAYS.get(n)
    if day is None:
        if len(_DAYS) > 64:
            _DAYS.clear()
        day = _DAYS[n] = time.strftime("%Y%m%d", time.gmtime(n * 86400))
    return day
