"""Prometheus collectors: contract names, bounded labels, cached children, multiprocess sums."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.accounting.accountant import Accountant
from gateway.accounting.metrics import EXPORTED, LATENCY_BUCKETS, MULTIPROC_ENV, Metrics, prepare_multiprocess_dir
from gateway.accounting.usage.record import UsageRecord
from gateway.config import MetricsConfig

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v4/beta/completions", "/v1/embeddings")


class NullSink:
    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    def submit(self, rec: UsageRecord) -> None:
        self.records.append(rec)


def rec(**kw: object) -> UsageRecord:
    base: dict[str, object] = {
        "id": "req_1",
        "key": "team-a",
        "model": "mock/echo",
        "provider": "mock",
        "endpoint": "/v1/chat/completions",
        "status": 200,
        "stream": False,
        "prompt_tokens": 3,
        "completion_tokens": 5,
        "latency_ms": 250.0,
    }
    base.update(kw)
    return UsageRecord(**base)  # type: ignore[arg-type]


def metrics(max_passthrough: int = 50) -> Metrics:
    return Metrics(MetricsConfig(max_passthrough_models=max_passthrough), ENDPOINTS)


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_a_request_is_counted_with_the_contract_labels() -> None:
    m = metrics()
    m.begin()
    m.observe("team-a", rec(stream=True, ttft_ms=40.0), True)
    assert value(m, "switchyard_requests_total", key="team-a", vendor="mock", model="mock/echo",
                 endpoint="/v1/chat/completions", status="200") == 1  # fmt: skip
    assert value(m, "switchyard_tokens_total", key="team-a", vendor="mock", model="mock/echo", kind="prompt") == 3
    assert value(m, "switchyard_tokens_total", key="team-a", vendor="mock", model="mock/echo", kind="completion") == 5
    d = {"vendor": "mock", "model": "mock/echo", "endpoint": "/v1/chat/completions", "stream": "true"}
    assert value(m, "switchyard_request_duration_seconds_count", **d) == 1
    assert value(m, "switchyard_request_duration_seconds_sum", **d) == pytest.approx(0.25)
    assert value(m, "switchyard_request_duration_seconds_bucket", **d, le="0.25") == 1
    assert value(m, "switchyard_request_duration_seconds_bucket", **d, le="0.1") == 0
    assert value(m, "switchyard_time_to_first_token_seconds_sum", vendor="mock", model="mock/echo") == pytest.approx(
        0.04
    )
    assert value(m, "switchyard_in_flight_requests") == 0


def test_ttft_is_only_for_streams_and_zero_tokens_add_nothing() -> None:
    m = metrics()
    m.observe("team-a", rec(stream=False, ttft_ms=None, prompt_tokens=0, completion_tokens=0, status=400), True)
    assert value(m, "switchyard_time_to_first_token_seconds_count", vendor="mock", model="mock/echo") == 0
    assert value(m, "switchyard_tokens_total", key="team-a", vendor="mock", model="mock/echo", kind="prompt") == 0
    assert value(m, "switchyard_requests_total", key="team-a", vendor="mock", model="mock/echo",
                 endpoint="/v1/chat/completions", status="400") == 1  # fmt: skip


def test_label_values_are_bounded() -> None:
    m = metrics(max_passthrough=2)
    for name in ("mock/a", "mock/b", "mock/c", "mock/d"):
        m.observe("team-a", rec(model=name), False)  # passthrough names
    m.observe("team-a", rec(model="bogus/x", provider=""), False)  # never routed: never its own label
    m.observe("unauthenticated", rec(model="", provider="", endpoint="/v1/whatever", status=401), False)
    m.observe("team-a", rec(model="configured-alias"), True)
    text = m.render()[0].decode()
    models = {
        s.labels["model"]
        for fam in text_string_to_metric_families(text)
        if fam.name == "switchyard_requests"
        for s in fam.samples
    }
    assert models == {"mock/a", "mock/b", "other", "none", "configured-alias"}
    assert value(m, "switchyard_requests_total", key="team-a", vendor="mock", model="other",
                 endpoint="/v1/chat/completions", status="200") == 2  # fmt: skip
    assert value(m, "switchyard_requests_total", key="unauthenticated", vendor="none", model="none",
                 endpoint="other", status="401") == 1  # fmt: skip


def test_hot_path_reuses_bound_children() -> None:
    m = metrics()
    m.observe("team-a", rec(), True)

    def no_labels(*a: object, **k: object) -> None:
        raise AssertionError(".labels() on the hot path")

    for metric in (m.requests, m.tokens, m.duration, m.ttft):
        metric.labels = no_labels  # type: ignore[method-assign]
    for _ in range(3):
        m.observe("team-a", rec(), True)
    assert value(m, "switchyard_requests_total", key="team-a", vendor="mock", model="mock/echo",
                 endpoint="/v1/chat/completions", status="200") == 4  # fmt: skip


def test_upstream_errors_are_bounded() -> None:
    m = metrics()
    m.upstream_error("openai", "timeout")
    m.upstream_error("-", "unreachable")
    for i in range(100):
        m.upstream_error("openai", f"code_{i}")
    assert value(m, "switchyard_upstream_errors_total", provider="openai", reason="timeout") == 1
    assert value(m, "switchyard_upstream_errors_total", provider="none", reason="unreachable") == 1
    reasons = {
        s.labels["reason"]
        for fam in text_string_to_metric_families(m.render()[0].decode())
        if fam.name == "switchyard_upstream_errors"
        for s in fam.samples
    }
    assert len(reasons) <= 51 and "other" in reasons


def test_accountant_tracks_in_flight_and_skips_usage_without_a_key() -> None:
    m = metrics()
    sink = NullSink()
    acc = Accountant(sink, m, access_log=False)
    acc.begin()
    acc.begin()
    assert value(m, "switchyard_in_flight_requests") == 2
    acc.finish("team-a", rec(), True)
    acc.finish(None, rec(key="", status=401), False)
    assert value(m, "switchyard_in_flight_requests") == 0
    assert len(sink.records) == 1  # the unauthenticated request reaches only the metrics
    assert value(m, "switchyard_requests_total", key="unauthenticated", vendor="mock", model="mock/echo",
                 endpoint="/v1/chat/completions", status="401") == 1  # fmt: skip


def test_buckets_span_10ms_to_120s_and_every_contract_series_is_exported() -> None:
    assert LATENCY_BUCKETS[0] == 0.01 and LATENCY_BUCKETS[-1] == 120.0
    m = metrics()
    m.observe("team-a", rec(stream=True, ttft_ms=5.0), True)
    m.upstream_error("openai", "timeout")
    m.usage_dropped(2)
    m.usage_buffered(7)
    m.limits_failure()
    m.circuit_state("openai", "gpt-4o", 1)
    m.file_bytes("team-a", "openai", "upload", 10)
    m.observe("team-a", rec(cost_micro_usd=1500), True)
    m.observe("team-a", rec(priced=False), True)
    m.budget_limits([("team-a", "day", 10.0)])
    m.budget_used("team-a", "day", 1.5, 1.8e9)
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    names = {s.name for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}
    base = {n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for n in names}
    assert base == set(EXPORTED)
    assert not any(n.endswith("_created") for n in names)
    assert value(m, "switchyard_usage_dropped_records_total") == 2
    assert value(m, "switchyard_usage_buffered_records") == 7


def test_prepare_multiprocess_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    prepare_multiprocess_dir(1)()  # one worker: in-memory metrics, nothing to set up
    assert MULTIPROC_ENV not in os.environ

    cleanup = prepare_multiprocess_dir(2)
    path = Path(os.environ[MULTIPROC_ENV])
    assert path.is_dir() and not list(path.iterdir())
    cleanup()
    assert not path.exists() and MULTIPROC_ENV not in os.environ

    own = tmp_path / "prom"
    own.mkdir()
    (own / "counter_123.db").write_bytes(b"stale")
    monkeypatch.setenv(MULTIPROC_ENV, str(own))
    prepare_multiprocess_dir(4)()
    assert own.is_dir() and not list(own.glob("*.db"))  # the operator's directory, emptied of stale files


def test_the_request_path_cells_count_what_the_wrappers_would() -> None:
    """The request path increments prometheus-client's value cells directly: every bucket, sum and
    count must be what ``Histogram.observe`` gives for the same observations (bounds included)."""
    from prometheus_client import CollectorRegistry, Histogram

    from gateway.accounting.metrics import LATENCY_BUCKETS

    latencies = [0.0, 0.01, 0.0100001, 0.5, 1.0, 119.9, 120.0, 500.0, 3.3]
    m = metrics()
    ref = CollectorRegistry()
    dur = Histogram("d", "d", buckets=LATENCY_BUCKETS, registry=ref)
    for s in latencies:
        m.observe("team-a", rec(latency_ms=s * 1000), True)
        dur.observe(s)
    labels = {"vendor": "mock", "model": "mock/echo", "endpoint": "/v1/chat/completions", "stream": "false"}
    name = "switchyard_request_duration_seconds"
    for le in [*(str(b) for b in LATENCY_BUCKETS), "+Inf"]:
        got = m.registry.get_sample_value(name + "_bucket", {**labels, "le": le})
        assert got == ref.get_sample_value("d_bucket", {"le": le}), le
    for suffix in ("_count", "_sum"):
        assert m.registry.get_sample_value(name + suffix, labels) == ref.get_sample_value("d" + suffix)
    assert value(m, "switchyard_requests_total", key="team-a", vendor="mock", model="mock/echo",
                 endpoint="/v1/chat/completions", status="200") == len(latencies)  # fmt: skip
