"""The Prometheus collectors (docs/operations.md "Metrics": dashboards and alerts rely on the names and labels).

Every label value is bounded: key names come from the config ("unauthenticated" for a request
without a valid key), vendors from the providers map, models are the configured names plus at
most ``metrics.max_passthrough_models`` passthrough names per process (the rest ``other``),
endpoints are the known routes (the rest ``other``). The request path does one dict lookup for
a bundle of label-bound children instead of five ``.labels()`` calls.

With ``switchyard serve --workers N`` the metrics live in prometheus-client's multiprocess
files (``PROMETHEUS_MULTIPROC_DIR``, prepared by ``prepare_multiprocess_dir`` before the workers
start) and any worker's ``GET /metrics`` renders the sum over all of them
(https://prometheus.github.io/client_python/multiprocess/).
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)

from gateway.accounting.usage.record import UsageRecord
from gateway.config import MetricsConfig

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OTHER = "other"
NONE = "none"
UNAUTHENTICATED = "unauthenticated"
MAX_ERROR_REASONS = 50  # upstream error codes can come from the upstream: bound them too

# LLM calls take from tens of milliseconds (embeddings, cached) to minutes (long generations).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS = LATENCY_BUCKETS

# Each series' HELP text, by its exported name.
HELP = {
    "switchyard_requests_total": "Requests answered, by key, vendor, model, endpoint and HTTP status.",
    "switchyard_tokens_total": "Tokens accounted (as reported by the upstream), by kind: prompt or completion.",
    "switchyard_request_duration_seconds": "Time from the request's arrival to the end of the answer.",
    "switchyard_time_to_first_token_seconds": "Time from a streamed request's arrival to its first event sent to the client.",
    "switchyard_upstream_errors_total": "Upstream failures, by provider and reason.",
    "switchyard_in_flight_requests": "Requests being served.",
    "switchyard_usage_buffered_records": "Usage records waiting to be written to the usage store.",
    "switchyard_usage_dropped_records_total": "Usage records dropped: the buffer was full, or the store could not take them.",
    "switchyard_limits_redis_failures_total": "Rate-limit checks that could not reach Redis (then allowed or denied per config).",
    "switchyard_circuit_state": "Circuit breaker per deployment: 0 closed, 1 open, 2 half-open (the worst over workers).",
    "switchyard_file_bytes_total": "File bytes relayed through the files API, by key, provider and direction (upload, download).",
    "switchyard_cost_usd_total": "Spend in US dollars at list prices (the catalog's or the config's), from the upstream's tokens.",
    "switchyard_unpriced_requests_total": "Requests that used tokens of a model with no known price (recorded at cost 0, priced: false).",
    "switchyard_budget_limit_usd": "Configured spending limit in US dollars per UTC window.",
    "switchyard_budget_spent_usd": "Dollars spent or reserved in the current UTC window, as of the subject's latest admission.",
    "switchyard_budget_reset_timestamp_seconds": "When the window of switchyard_budget_spent_usd ends (unix seconds); past it, the value is stale.",
}
# The documented series (counters with ``_total``; histograms add _bucket/_sum/_count).
EXPORTED = frozenset(HELP)


def multiprocess_mode() -> bool:
    """Whether this process writes metrics to the shared files (decided when prometheus-client loaded)."""
    return values.ValueClass is not values.MutexValue


@dataclass(slots=True)
class _Cells:
    """A histogram child's cells: ``observe`` without the wrapper's checks and bucket loop."""

    sum: Any
    buckets: list[Any]
    bounds: list[float]

    def observe(self, v: float) -> None:
        self.sum.inc(v)
        self.buckets[bisect_left(self.bounds, v)].inc(1)  # the first bound >= v, as Histogram.observe


def _cells(h: Histogram) -> _Cells:
    return _Cells(h._sum, h._buckets, h._upper_bounds)  # see _Children


@dataclass(slots=True)
class _Children:
    """The value cells of one label set's children. The request path increments the cells
    themselves: prometheus-client's ``inc``/``observe`` wrappers add checks that cost more than the
    increment (a unit test holds the rendered result equal to the wrappers')."""

    requests: Any
    prompt: Any
    completion: Any
    duration: _Cells
    ttft: _Cells
    cost: Any
    unpriced: Any


class Metrics:
    def __init__(self, cfg: MetricsConfig, endpoints: Iterable[str]) -> None:
        # Without ``_created`` series: multiprocess mode cannot export them, so every worker
        # count shows the same series.
        disable_created_metrics()
        self.multiprocess = multiprocess_mode()
        # A registry per instance: several gateways in one process (tests) must not collide.
        self.registry = CollectorRegistry()
        r = self.registry

        def counter(name: str, *labels: str) -> Counter:
            return Counter(name, HELP[name], labels, registry=r)

        def gauge(name: str, mode: str, *labels: str) -> Gauge:
            return Gauge(name, HELP[name], labels, registry=r, multiprocess_mode=mode)

        def histogram(name: str, buckets: tuple[float, ...], *labels: str) -> Histogram:
            return Histogram(name, HELP[name], labels, buckets=buckets, registry=r)

        self.requests = counter("switchyard_requests_total", "key", "vendor", "model", "endpoint", "status")
        self.tokens = counter("switchyard_tokens_total", "key", "vendor", "model", "kind")
        self.duration = histogram(
            "switchyard_request_duration_seconds", LATENCY_BUCKETS, "vendor", "model", "endpoint", "stream"
        )
        self.ttft = histogram("switchyard_time_to_first_token_seconds", TTFT_BUCKETS, "vendor", "model")
        self.upstream_errors = counter("switchyard_upstream_errors_total", "provider", "reason")
        self.in_flight = gauge("switchyard_in_flight_requests", "livesum")
        self.buffered = gauge("switchyard_usage_buffered_records", "livesum")
        self.dropped = counter("switchyard_usage_dropped_records_total")
        self.limits_failures = counter("switchyard_limits_redis_failures_total")
        self.circuit = gauge("switchyard_circuit_state", "livemax", "provider", "upstream")
        self.file_bytes_total = counter("switchyard_file_bytes_total", "key", "provider", "direction")
        self.cost = counter("switchyard_cost_usd_total", "key", "vendor", "model")
        self.unpriced = counter("switchyard_unpriced_requests_total", "vendor", "model")
        # Budget use per limited subject (a key's name; any other subject the limiter is asked about)
        # and window (day, month), as last seen at an admission, reservations in flight included.
        self.budget_limit = gauge("switchyard_budget_limit_usd", "mostrecent", "subject", "window")
        self.budget_spent = gauge("switchyard_budget_spent_usd", "mostrecent", "subject", "window")
        self.budget_reset = gauge("switchyard_budget_reset_timestamp_seconds", "mostrecent", "subject", "window")
        self._in_flight = self.in_flight._value  # see _Children
        self.max_passthrough = cfg.max_passthrough_models
        self._endpoints = {e: e for e in endpoints}
        self._passthrough: set[str] = set()
        self._children: dict[tuple[str, str, str, str, int, bool], _Children] = {}
        self._errors: dict[tuple[str, str], Counter] = {}
        self._budgets: set[tuple[str, str]] = set()

    # -- the request path ------------------------------------------------------------------
    def begin(self) -> None:
        self._in_flight.inc(1)

    def observe(self, key: str, rec: UsageRecord, configured_model: bool) -> None:
        """One finished request (ends what ``begin`` started)."""
        self._in_flight.inc(-1)
        vendor = rec.provider or NONE
        model = self._model_label(rec.model, rec.provider, configured_model)
        endpoint = self._endpoints.get(rec.endpoint, OTHER)
        ident = (key, vendor, model, endpoint, rec.status, rec.stream)
        c = self._children.get(ident) or self._bind(ident)
        c.requests.inc(1)
        if rec.prompt_tokens > 0:
            c.prompt.inc(rec.prompt_tokens)
        if rec.completion_tokens > 0:
            c.completion.inc(rec.completion_tokens)
        c.duration.observe(rec.latency_ms / 1000.0)
        if rec.stream and rec.ttft_ms is not None:
            c.ttft.observe(rec.ttft_ms / 1000.0)
        if rec.cost_micro_usd > 0:
            c.cost.inc(rec.cost_micro_usd / 1_000_000)
        if not rec.priced:
            c.unpriced.inc(1)

    def upstream_error(self, provider: str, reason: str) -> None:
        ident = (provider if provider and provider != "-" else NONE, reason or OTHER)
        child = self._errors.get(ident)
        if child is None:
            if len(self._errors) >= MAX_ERROR_REASONS:
                ident = (ident[0], OTHER)
            child = self._errors.get(ident) or self.upstream_errors.labels(*ident)
            self._errors[ident] = child
        child.inc()

    # -- the usage writer ------------------------------------------------------------------
    def file_bytes(self, key: str, provider: str, direction: str, n: int) -> None:
        self.file_bytes_total.labels(key, provider, direction).inc(n)

    def limits_failure(self) -> None:
        self.limits_failures.inc()

    def budget_limits(self, limits: Iterable[tuple[str, str, float]]) -> None:
        """The configured budgets, ``(subject, window, usd)``; set at start-up and on every reload
        (a budget a reload removed leaves the series)."""
        now = {(subject, window): usd for subject, window, usd in limits}
        for gone in self._budgets - now.keys():
            for g in (self.budget_limit, self.budget_spent, self.budget_reset):
                try:
                    g.remove(*gone)
                except KeyError:
                    pass
        for (subject, window), usd in now.items():
            self.budget_limit.labels(subject, window).set(usd)
        self._budgets = set(now)

    def budget_used(self, subject: str, window: str, spent_usd: float, reset_at: float) -> None:
        self.budget_spent.labels(subject, window).set(spent_usd)
        self.budget_reset.labels(subject, window).set(reset_at)

    def circuit_state(self, provider: str, upstream: str, state: int) -> None:
        self.circuit.labels(provider, upstream).set(state)

    def usage_buffered(self, n: int) -> None:
        self.buffered.set(n)

    def usage_dropped(self, n: int) -> None:
        self.dropped.inc(n)

    # -- labels ----------------------------------------------------------------------------
    def _model_label(self, model: str, provider: str, configured: bool) -> str:
        if configured:
            return model
        if not model:
            return NONE
        if not provider:
            return OTHER  # never routed (unknown vendor): a made-up name must not take a label slot
        if model in self._passthrough:
            return model
        if len(self._passthrough) < self.max_passthrough:
            self._passthrough.add(model)
            return model
        return OTHER

    def _bind(self, ident: tuple[str, str, str, str, int, bool]) -> _Children:
        key, vendor, model, endpoint, status, stream = ident
        c = _Children(
            requests=self.requests.labels(key, vendor, model, endpoint, str(status))._value,
            prompt=self.tokens.labels(key, vendor, model, "prompt")._value,
            completion=self.tokens.labels(key, vendor, model, "completion")._value,
            duration=_cells(self.duration.labels(vendor, model, endpoint, "true" if stream else "false")),
            ttft=_cells(self.ttft.labels(vendor, model)),
            cost=self.cost.labels(key, vendor, model)._value,
            unpriced=self.unpriced.labels(vendor, model)._value,
        )
        self._children[ident] = c
        return c

    # -- exposition ------------------------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        """The text exposition: this process's registry, or the sum over every worker's files."""
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def reap_dead_workers(self) -> None:
        """Forget the live gauges of workers that died without a clean exit (killed, crashed)."""
        if not self.multiprocess:
            return
        path = os.environ[MULTIPROC_ENV]
        for f in glob.glob(os.path.join(path, "gauge_live*_*.db")):
            pid = os.path.basename(f)[: -len(".db")].rpartition("_")[2]
            if pid.isdigit() and not _alive(int(pid)):
                multiprocess.mark_process_dead(int(pid), path)

    def close(self) -> None:
        """A clean worker exit: its in-flight and buffered gauges leave the sums."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid(), os.environ[MULTIPROC_ENV])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return True


def prepare_multiprocess_dir(workers: int) -> Callable[[], None]:
    """Set up ``PROMETHEUS_MULTIPROC_DIR`` before the workers start; returns the clean-up for exit.

    An operator's directory (the variable already set) is used and emptied of stale files, as
    prometheus-client requires between runs; otherwise several workers get a fresh temporary
    directory that is removed on exit. One worker without the variable keeps in-memory metrics.
    """
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        for f in glob.glob(os.path.join(path, "*.db")):
            os.remove(f)
        return lambda: None
    if workers <= 1:
        return lambda: None
    path = tempfile.mkdtemp(prefix="switchyard-metrics-")
    os.environ[MULTIPROC_ENV] = path

    def cleanup() -> None:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)

    return cleanup
