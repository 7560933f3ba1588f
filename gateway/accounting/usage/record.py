"""The one record every request with a valid key produces (docs/operations.md "Usage records")."""

from __future__ import annotations

import time
from dataclasses import dataclass


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

    def __post_init__(self) -> None:
        if not self.ts:
            self.ts = time.time()

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def day(self) -> str:
        """The UTC day as ``YYYYMMDD`` (the Redis hash key's suffix)."""
        return time.strftime("%Y%m%d", time.gmtime(self.ts))
