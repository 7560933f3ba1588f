"""The benchmark harness: its pure pieces, and one tiny bounded run end to end (no timing assertions)."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import sys
import threading

import pytest

from bench import peers
from bench.loadgen import percentile, stream_ended, verdict
from bench.loads import Load, Result, parse_wrk, wrk
from bench.procs import cpu_seconds, rss_mb, tree, wait_idle
from bench.report import Row, add_deltas, render_goals, render_rows, render_summary
from bench.run import combine
from bench.scenarios import BY_NAME, GROUPS, body, prose, request, select
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


def test_parse_wrk_counts_streams_without_their_end_as_errors():
    out = WRK_OUT.replace('"timeout": 1}', '"timeout": 0, "unended": 5}')
    r = parse_wrk(out)
    assert (r.errors, r.error_kinds) == (8, "status 3, unended 5")


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
    stop = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    raw = b"\r\n12\r\n" + stop[:18] + b"\r\n2a\r\n" + stop[18:] + b"\r\n0\r\n\r\n"  # split across chunks
    assert verdict(b"HTTP/1.1 200 OK\r\n", raw, "message_stop") is None
    assert verdict(b"HTTP/1.1 200 OK\r\n", raw, "response.completed") == "stream ended without response.completed"


def test_stream_ends_are_the_last_event():
    done = b'data: {"a":1}\n\ndata: [DONE]\n\n'
    assert stream_ended(done, "[DONE]")
    assert not stream_ended(b'data: [DONE]\n\ndata: {"error":{}}\n\n', "[DONE]")
    completed = b'event: response.output_text.done\ndata: {}\n\nevent: response.completed\ndata: {"x":1}\n\n'
    assert stream_ended(completed, "response.completed")
    assert stream_ended(completed + b"data: [DONE]\n\n", "response.completed")  # LiteLLM's trailing [DONE]
    assert stream_ended(completed.replace(b"\n", b"\r\n"), "response.completed")
    failed = completed + b'event: response.failed\ndata: {"type":"response.failed"}\n\n'
    assert not stream_ended(failed, "response.completed")
    assert not stream_ended(
        b'event: message_delta\ndata: {"x":"message_stop"}\n\n' + b"event: ping\n\n", "message_stop"
    )


def test_upstream_spec():
    assert parse_spec("slow:8001:chunks=20,latency_ms=500") == ("slow", 8001, {"chunks": 20, "latency_ms": 500.0})
    assert parse_spec("fast:8000") == ("fast", 8000, {})


def test_bodies_route_through_the_vendor_prefix_except_direct():
    sc = BY_NAME["stream-32"]
    assert b'"model":"gpt-4o-mini"' in body(sc, "direct")
    assert b'"model":"fast/gpt-4o-mini"' in body(sc, "gateway")
    assert b'"stream":true' in body(sc, "gateway")


def test_native_rows_send_the_floor_the_same_request():
    sc = BY_NAME["messages-stream-32"]
    gw, bare = request(sc, "gateway", "sk-k"), request(sc, "bare-aiohttp", "sk-k")
    assert gw == bare and gw.path == "/v1/messages" and gw.end == "message_stop"
    assert ("x-api-key", "sk-k") in gw.headers and ("anthropic-version", "2023-06-01") in gw.headers
    assert b'"model":"anthropic/claude-sonnet-4-5"' in gw.body
    assert b'"model":"claude-sonnet-4-5"' in request(sc, "direct", "k").body
    r = request(BY_NAME["responses-stream-32"], "gateway", "sk-k")
    assert (r.path, r.end, r.headers) == ("/v1/responses", "response.completed", (("authorization", "Bearer sk-k"),))
    assert b'"store":false' in r.body


def test_translated_rows_send_the_floor_the_upstream_request():
    sc = BY_NAME["messages-to-openai-32"]
    gw, bare = request(sc, "gateway", "k"), request(sc, "bare-aiohttp", "k")
    assert (gw.path, gw.end, bare.path, bare.end) == ("/v1/messages", "message_stop", "/v1/chat/completions", "[DONE]")
    assert b'"stream_options":{"include_usage":true}' in bare.body and b'"max_tokens":256' in bare.body
    sc = BY_NAME["responses-to-anthropic-32"]
    gw, direct = request(sc, "gateway", "k"), request(sc, "direct", "k")
    assert (gw.path, direct.path, direct.end) == ("/v1/responses", "/v1/messages", "message_stop")
    assert request(BY_NAME["embeddings-32"], "gateway", "k").end is None


def test_portkey_is_sent_the_upstream_model_and_skips_translations():
    sc = BY_NAME["responses-stream-32"]
    assert b'"model":"gpt-4o-mini"' in request(sc, "portkey", "k").body
    assert (
        dict(peers.portkey_headers(BY_NAME["messages-stream-32"], "http://u/v1"))["x-portkey-provider"] == "anthropic"
    )
    assert peers.unsupported("portkey", BY_NAME["messages-to-openai-32"])
    assert (
        peers.unsupported("portkey", sc) is None
        and peers.unsupported("litellm", BY_NAME["messages-to-openai-32"]) is None
    )


def test_litellm_config_names_every_model_the_scenarios_send():
    cfg = peers.litellm_config(
        {"fast": "http://f/v1", "slow": "http://s/v1", "trickle": "http://t/v1"}, "http://a", "sk"
    )
    for name in ("fast/gpt-4o-mini", "fast/text-embedding-3-small", "anthropic/claude-sonnet-4-5", "slow/gpt-4o-mini"):
        assert f"model_name: {name}\n" in cfg
    assert "model: text-completion-openai/gpt-3.5-turbo-instruct" in cfg and "master_key: sk" in cfg


def test_scenario_selection_by_name_glob_and_group():
    assert select("ttfb,chat-32") == ["chat-32", "ttfb"]  # table order
    assert select("*-stream-32") == ["responses-stream-32", "messages-stream-32"]
    streams = select("streams")
    assert "stream-32" in streams and "messages-to-openai-32" in streams and "chat-32" not in streams
    assert set(GROUPS["ratios"]) == {n for n, s in BY_NAME.items() if s.cpu_target}
    with pytest.raises(ValueError):
        select("nope")


def test_prose_is_deterministic_and_sized_in_words():
    assert prose(1000) == prose(1000)
    assert len(prose(1000).split()) == 1000


def _row(target: str, p50: float, p99: float, cpu: float | None = None, scenario: str = "chat-32") -> Row:
    return Row(BY_NAME[scenario], target, 32, Result(100, 1.0, p50, p99, 0), cpu_ms=cpu)


def test_added_latency_and_goals():
    rows = [_row("direct", 1.0, 2.0), _row("bare-aiohttp", 2.0, 4.0, 0.1), _row("gateway", 3.0, 9.0, 0.2)]
    rows[0].ttfb_p50_ms, rows[2].ttfb_p50_ms, rows[2].ttfb_p99_ms = 0.5, 1.25, 2.0
    add_deltas(rows)
    assert (rows[2].added_p50_ms, rows[2].added_p99_ms, rows[2].added_ttfb_ms) == (2.0, 7.0, 0.75)
    table = render_rows(rows)
    assert "| +2.00 / +7.00 | 1.25 / 2.00 (+0.75) | 0.200 | 2.00 |" in table
    assert table.count("\n") == len(rows) + 1
    goals = render_goals(rows, idle_rss_per_worker=80.0)
    assert "(`chat-32`) | 2.00 x | <= 1.3 x | **missed** |" in goals  # 0.2 / 0.1
    assert "| 80.00 MB | <= 80 MB | met |" in goals
    assert "(`responses-to-anthropic-32`) | — | <= 2.5 x | not measured |" in goals
    summary = render_summary(rows)
    assert summary is not None and "| chat-32 | 0.100 | 0.200 (2.00x) |" in summary


def test_rounds_combine_to_the_median_cpu():
    rounds = [_row("gateway", p, p, cpu) for p, cpu in ((1.0, 0.3), (2.0, 0.1), (3.0, 0.2))]
    rounds[0].ttfb_p50_ms = 0.5
    row = combine(rounds)
    assert (row.cpu_ms, row.p50, row.ttfb_p50_ms, row.rounds) == (0.2, 3.0, 0.5, [0.3, 0.1, 0.2])
    assert "CPU per round 0.300, 0.100, 0.200: median shown" in render_rows([row])


def test_proc_readings_for_this_process():
    me = os.getpid()
    assert tree(me)[0] == me
    assert cpu_seconds(me) > 0
    assert rss_mb(me) > 1
    assert wait_idle(me, limit=5) < 2  # this process sleeps while it waits: idle at the first look


def _table(text: str) -> list[dict[str, str]]:
    """The main table's rows as {column: cell}, the scenario name carried down to its later rows."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("| scenario | target |"))
    head = [c.strip() for c in lines[at].strip("|").split("|")]
    rows, scenario = [], ""
    for line in lines[at + 2 :]:
        if not line.startswith("| "):
            break
        cells = dict(zip(head, (c.strip() for c in line.strip("|").split("|")), strict=True))
        scenario = cells["scenario"].split("**")[1] if cells["scenario"] else scenario
        rows.append({**cells, "scenario": scenario})
    return rows


NEW_SCENARIOS = (
    "completions-32",
    "embeddings-32",
    "responses-stream-32",
    "messages-stream-32",
    "messages-to-openai-32",
    "responses-to-anthropic-32",
)


def test_a_tiny_run_end_to_end(tmp_path):
    """Upstreams, bare proxy and gateway really start; every new scenario gives a row per target, without errors (the
    streams reached their proper ends) and with a time to first byte; everything is stopped after. Bounded: the
    Python load generator for fractions of a second per row."""
    out = tmp_path / "bench.md"
    argv = [sys.executable, "-m", "bench", "--only", ",".join([*NEW_SCENARIOS, "streams-5000"])]
    argv += ["--targets", "bare-aiohttp,gateway", "--loadgen", "python", "--duration", "0.2", "--warmup", "0"]
    argv += ["--ttfb-seconds", "0.05", "--streams", "20", "--ramp", "0.2", "--stream-pace-ms", "20"]
    argv += ["--budget", "240", "--out", str(out)]  # a cap for a busy machine; about 20 s on a quiet one
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    rows = _table(text)
    assert [(r["scenario"], r["target"]) for r in rows] == [
        (n, t) for n in (*NEW_SCENARIOS, "streams-5000") for t in ("bare-aiohttp", "gateway")
    ], text
    for r in rows:
        assert r["errors"] == "0", f"{r['scenario']} {r['target']}: {r['errors']} errors; notes: {r['notes']}\n{text}"
        assert r["req/s"] not in ("—", "0"), r  # something completed
        assert float(r["CPU ms/req"]) > 0, r
        if r["target"] == "gateway":
            assert float(r["x floor"]) > 0, r
        if BY_NAME[r["scenario"]].stream:
            assert r["TTFB p50 / p99 ms (added)"], r
    assert text.count("20/20 complete") == 2
    assert "idle RSS per worker" in text and "Notes:" in text
    assert "| CPU/request vs the bare proxy: Messages API stream, native (`messages-stream-32`) | " in text
    assert "| responses-to-anthropic-32 | " in text  # the summary table


SSE_OK = b'event: response.created\ndata: {}\n\nevent: response.completed\ndata: {"type":"response.completed"}\n\n'


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
@pytest.mark.parametrize(("answer", "unended"), [(SSE_OK, 0), (SSE_OK + b"event: error\ndata: {}\n\n", 1)])
def test_wrk_script_counts_streams_without_their_end(tmp_path, answer, unended):
    """bench/wrk.lua's stream check against a one-answer server: a stream whose last event is not the end is counted."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "body.json").write_bytes(b"{}")
        load = Load(
            f"http://127.0.0.1:{server.server_port}/v1/responses",
            tmp_path / "body.json",
            (("authorization", "Bearer k"),),
            1,
            1,
            timeout=5,
            end="response.completed",
        )
        r = wrk(load)
    finally:
        server.shutdown()
        server.server_close()
    assert r.requests > 0
    assert r.errors == (r.requests if unended else 0), r.error_kinds


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instruction_counts_are_taken_under_callgrind():
    """``python -m bench.instructions`` really counts: the bare proxy on the gateway's upstream client, a stream
    scenario, a few requests under callgrind (bounded: 16 requests; about 20 s, start-up under valgrind most)."""
    argv = [sys.executable, "-m", "bench.instructions", "bare-switchyard", "stream-32"]
    argv += ["--requests", "16", "--clients", "4", "--warmup", "4"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found = re.search(r"bare-switchyard stream-32: ([\d,]+) instructions per request", done.stdout)
    assert found, done.stdout
    assert 10_000 < int(found.group(1).replace(",", "")) < 100_000_000
