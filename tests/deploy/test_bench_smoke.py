"""The benchmark harness: its pure pieces, and one tiny bounded run end to end (no timing assertions)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.loadgen import percentile, verdict
from bench.loads import Result, parse_wrk
from bench.procs import cpu_seconds, rss_mb, tree
from bench.report import Row, add_deltas, render_goals, render_rows
from bench.scenarios import BY_NAME, body, prose
from bench.upstream import parse_spec
from tests.support import ROOT

WRK_OUT = """Running 1s test @ http://127.0.0.1:1/v1/chat/completions
  1 threads and 32 connections
Requests/sec:   5898.67
WRKJSON {"requests": 17696, "duration_us": 3007314, "bytes": 11697056, "p50_us": 4731, "p90_us": 7690, \
"p99_us": 28482, "max_us": 40192, "connect": 0, "read": 0, "write": 0, "status": 3, "timeout": 1}
"""


def test_parse_wrk_reads_the_scripts_json_line():
    r = parse_wrk(WRK_OUT)
    assert (r.requests, r.p50_ms, r.p99_ms, r.errors) == (17696, 4.731, 28.482, 4)
    assert r.error_kinds == "status 3, timeout 1"
    assert round(r.rps) == 5884


def test_parse_wrk_without_result_line_fails_clearly():
    with pytest.raises(RuntimeError, match="no result line"):
        parse_wrk("wrk: connection refused\n")


def test_percentile_is_nearest_rank_and_empty_is_none():
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0


def test_stream_verdicts():
    ok_tail = b'data: {"x":1}\n\n\r\n0e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n'[-64:]
    assert verdict(b"HTTP/1.1 200 OK\r\n", ok_tail) is None
    assert verdict(b"HTTP/1.1 200 OK\r\n", b"data: {}\n\n\r\n0\r\n\r\n") == "stream ended without [DONE]"
    err = b'HTTP/1.1 503 Service Unavailable\r\n\r\n{"error":{"message":"x","code":"upstream_unavailable"}}'
    assert verdict(err, b"") == "HTTP 503 upstream_unavailable"


def test_upstream_spec():
    assert parse_spec("slow:8001:chunks=20,latency_ms=500") == ("slow", 8001, {"chunks": 20, "latency_ms": 500.0})
    assert parse_spec("fast:8000") == ("fast", 8000, {})


def test_bodies_route_through_the_vendor_prefix_except_direct():
    sc = BY_NAME["stream-32"]
    assert b'"model":"gpt-4o-mini"' in body(sc, "direct")
    assert b'"model":"fast/gpt-4o-mini"' in body(sc, "gateway")
    assert b'"stream":true' in body(sc, "gateway")


def test_prose_is_deterministic_and_sized_in_words():
    assert prose(1000) == prose(1000)
    assert len(prose(1000).split()) == 1000


def _row(target: str, p50: float, p99: float, cpu: float | None = None, scenario: str = "chat-32") -> Row:
    return Row(BY_NAME[scenario], target, 32, Result(100, 1.0, p50, p99, 0), cpu_ms=cpu)


def test_added_latency_and_goals():
    rows = [_row("direct", 1.0, 2.0), _row("bare-aiohttp", 2.0, 4.0, 0.1), _row("gateway", 3.0, 9.0, 0.2)]
    add_deltas(rows)
    assert (rows[2].added_p50_ms, rows[2].added_p99_ms) == (2.0, 7.0)
    table = render_rows(rows)
    assert "| +2.00 / +7.00 |" in table and table.count("\n") == len(rows) + 1
    goals = render_goals(rows, idle_rss_per_worker=80.0)
    assert "| 2.00 x | <= 1.5 x | **missed** |" in goals  # 0.2 / 0.1
    assert "| 80.00 MB | <= 120 MB | met |" in goals
    assert "not measured" in goals  # the scenarios these rows don't cover


def test_proc_readings_for_this_process():
    me = os.getpid()
    assert tree(me)[0] == me
    assert cpu_seconds(me) > 0
    assert rss_mb(me) > 1


def test_a_tiny_run_end_to_end(tmp_path):
    """Upstream, bare proxy and gateway really start; every row completes without errors; all stopped after."""
    out = tmp_path / "bench.md"
    argv = [sys.executable, "-m", "bench", "--scenarios", "chat-32,streams-5000"]
    argv += ["--targets", "direct,bare-aiohttp,gateway", "--duration", "1", "--warmup", "0"]
    argv += ["--streams", "20", "--ramp", "0.2", "--stream-pace-ms", "20", "--budget", "60", "--out", str(out)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "| clients |" not in line]
    table = [r for r in rows if r.split("|")[2].strip() in ("direct", "bare-aiohttp", "gateway")]
    assert len(table) == 6, text
    for r in table:
        cells = [c.strip() for c in r.split("|")]
        assert cells[10] == "0", r  # errors
        assert cells[4] not in ("—", "0"), r  # req/s: something completed
    assert text.count("20/20 complete") == 3
    assert "idle RSS per worker" in text and "Notes:" in text
