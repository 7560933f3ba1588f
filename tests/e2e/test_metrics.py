"""Prometheus multiprocess mode: workers in separate processes add up, dead workers leave the live gauges."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.accounting.metrics import MULTIPROC_ENV
from tests.support import ROOT

WORKER = textwrap.dedent(
    """
    import sys
    from gateway.config import MetricsConfig
    from gateway.accounting.metrics import Metrics
    from gateway.accounting.usage.record import UsageRecord
    m = Metrics(MetricsConfig(), ["/v1/chat/completions"])
    n = int(sys.argv[1])
    for i in range(n):
        m.begin()
        m.observe("team-a", UsageRecord(id=str(i), key="team-a", model="mock/echo", provider="mock",
                  endpoint="/v1/chat/completions", status=200, stream=False, prompt_tokens=2), True)
    m.begin()  # one left in flight
    m.usage_buffered(n)
    if sys.argv[2] == "clean":
        m.close()
    """
)


RENDER = textwrap.dedent(
    """
    import os
    from gateway.config import MetricsConfig
    from gateway.accounting.metrics import Metrics
    m = Metrics(MetricsConfig(), [])
    m.reap_dead_workers()
    print(f"# pid {os.getpid()}")
    print(m.render()[0].decode())
    """
)


def _run(code: str, env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout


def test_multiprocess_workers_add_up_and_dead_workers_leave_the_live_gauges(tmp_path: Path) -> None:
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path), "PYTHONPATH": str(ROOT)}
    _run(WORKER, env, "3", "clean")  # exits cleanly: mark_process_dead
    _run(WORKER, env, "4", "crash")  # exits without clean-up: reaped by the next reader
    text = _run(RENDER, env)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    labels = (("endpoint", "/v1/chat/completions"), ("key", "team-a"), ("model", "mock/echo"), ("status", "200"))
    labels = tuple(sorted((*labels, ("vendor", "mock"))))
    assert samples[("switchyard_requests_total", labels)] == 7
    assert samples[("switchyard_in_flight_requests", ())] == 0  # both workers are gone
    assert samples[("switchyard_usage_buffered_records", ())] == 0
    reader_pid = text.split("\n", 1)[0].removeprefix("# pid ")
    assert [p.name for p in tmp_path.glob("gauge_live*")] == [f"gauge_livesum_{reader_pid}.db"]  # the reader's own
