"""The pipeline's last step: one finished request -> usage store, metrics and access log.

Nothing here waits: the record is handed to the usage writer's buffer (written off the
request path) and metric children are cached per label set.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, Protocol

import orjson

from gateway.accounting.usage.record import UsageRecord

access_logger = logging.getLogger("switchyard.access")
ACCESS_FLUSH_DELAY = 0.05  # seconds


class UsageSink(Protocol):
    def submit(self, rec: UsageRecord) -> None: ...


class MetricsSink(Protocol):
    def begin(self) -> None: ...
    def observe(self, key: str, rec: UsageRecord, configured_model: bool) -> None: ...
    def upstream_error(self, provider: str, reason: str) -> None: ...


def _access_line(rec: UsageRecord) -> bytes:
    return orjson.dumps(
        {
            "ts": round(rec.ts, 3),
            "request_id": rec.id,
            "key": rec.key,
            "model": rec.model,
            "provider": rec.provider,
            "endpoint": rec.endpoint,
            "status": rec.status,
            "stream": rec.stream,
            "prompt_tokens": rec.prompt_tokens,
            "completion_tokens": rec.completion_tokens,
            "latency_ms": round(rec.latency_ms, 2),
            "ttft_ms": None if rec.ttft_ms is None else round(rec.ttft_ms, 2),
            "estimated": rec.estimated,
            "cost_usd": rec.cost_usd,
            "priced": rec.priced,
        }
    )


class Accountant:
    def __init__(self, usage: UsageSink, metrics: MetricsSink | None, access_log: bool) -> None:
        self.usage = usage
        self.metrics = metrics
        self.access_log = access_log
        self._out: Any = sys.stderr.buffer if hasattr(sys.stderr, "buffer") else None
        self._flush_pending = False

    def begin(self) -> None:
        """Called once per request as it starts: the in-flight gauge goes up until ``finish``."""
        if self.metrics is not None:
            self.metrics.begin()

    def finish(self, key_name: str | None, rec: UsageRecord, configured_model: bool) -> None:
        """Called once per request after ``begin``. Requests without a valid key reach only the metrics."""
        if key_name is not None:
            self.usage.submit(rec)
        if self.metrics is not None:
            self.metrics.observe(key_name or "unauthenticated", rec, configured_model)
        if self.access_log:
            self._write_access(rec)

    def upstream_error(self, provider: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.upstream_error(provider, reason)

    def _write_access(self, rec: UsageRecord) -> None:
        # A JSON line per request; prompts, completions and credentials are never in it.
        line = _access_line(rec)
        if access_logger.handlers or self._out is None:
            access_logger.info(line.decode())
        else:
            try:
                self._out.write(line + b"\n")
            except (OSError, ValueError):
                return
            # One flush per burst, not per line: a syscall per request cost ~15 us at full load,
            # and lines still reach the log within ACCESS_FLUSH_DELAY.
            if not self._flush_pending:
                self._flush_pending = True
                asyncio.get_running_loop().call_later(ACCESS_FLUSH_DELAY, self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        try:
            self._out.flush()
        except (OSError, ValueError):
            pass
