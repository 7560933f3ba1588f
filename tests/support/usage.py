"""Usage records as the tests build them: one request each, on a fixed UTC day."""

from __future__ import annotations

from typing import Any

from gateway.accounting.usage.record import UsageRecord

DAY_TS = 1_750_000_000.0  # 2025-06-15 UTC
DAY = "20250615"


def make_record(
    n: int = 0,
    key: str = "team-a",
    model: str = "mock/echo",
    status: int = 200,
    stream: bool = False,
    prompt: int = 3,
    completion: int = 5,
    ts: float = DAY_TS,
    **kw: Any,
) -> UsageRecord:
    return UsageRecord(
        id=f"req_{n}",
        key=key,
        model=model,
        provider=model.split("/", 1)[0] if "/" in model else "",
        endpoint="/v1/chat/completions",
        status=status,
        stream=stream,
        prompt_tokens=prompt,
        completion_tokens=completion,
        latency_ms=12.34,
        ttft_ms=4.5 if stream else None,
        ts=ts,
        **kw,
    )
