"""``python -m bench``: what the gateway adds to every request, measured against the upstream and a bare proxy.

One run starts a simulated OpenAI upstream, the gateway as in production (auth, routing, usage to
Redis, metrics; access log off), the bare proxies, and a load generator in its own process; then,
scenario by scenario and target by target: a warm-up, a CPU and peak-RSS reading of the proxy's
process tree from /proc, the measured load, a second reading. It prints one markdown table
(``--out`` writes it to a file too). Everything is bounded: each load by a duration and a timeout,
the whole run by ``--budget`` seconds (rows past it are marked skipped).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import procs
from bench.loadgen import raise_fd_limit
from bench.loads import WRK_HELP, Load, Result, have_wrk, python_burst, python_loop, wrk
from bench.report import Row, add_deltas, client_choice, render_goals, render_rows
from bench.scenarios import (
    ALL_TARGETS,
    BARE,
    BY_NAME,
    CHUNKS,
    DIRECT,
    GATEWAY,
    SLOW_LATENCY_MS,
    SLOW_STREAM_CHUNKS,
    SLOW_STREAM_PACE_MS,
    WORDS_100K_TOKENS,
    Scenario,
    body,
    body_file,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
# Slow streams start evenly over this many seconds: about the rate one worker can set streams up at, so the
# row measures holding 5,000 streams, not a connection storm (wrk-style rows measure throughput).
BURST_RAMP_S = 3.0
FD_RESERVE = 512
SETTLE_S = 1.0
MANY_CLIENTS = 128
CLIENT_MODULES = {
    "bare-aiohttp": ["aiohttp"],
    "bare-httpx": ["httpx"],
    "bare-httpx-aiohttp": ["httpx", "httpx_aiohttp"],
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "bench" / "config.yaml"), help="gateway config (SYBENCH_* expanded)")
    ap.add_argument("--workers", type=int, default=1, help="gateway workers (figures are for the whole tree)")
    ap.add_argument("--duration", type=int, default=3, help="measured seconds per row (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up seconds before each row (default 1)")
    ap.add_argument("--streams", type=int, default=5000, help="concurrent slow streams (default 5000)")
    ap.add_argument("--ramp", type=float, default=BURST_RAMP_S, help="seconds over which slow streams start")
    ap.add_argument("--stream-pace-ms", type=float, default=SLOW_STREAM_PACE_MS, help="pause before each slow chunk")
    ap.add_argument("--scenarios", default=",".join(BY_NAME), help="comma-separated subset of: " + ", ".join(BY_NAME))
    ap.add_argument("--targets", default=",".join(ALL_TARGETS), help="subset of: " + ", ".join(ALL_TARGETS))
    ap.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto", help="rate scenarios' generator")
    ap.add_argument("--redis-url", help=f"Redis for usage (default {DEFAULT_REDIS}, else a private redis-server)")
    ap.add_argument("--budget", type=float, default=170.0, help="seconds the whole run may take (default 170)")
    ap.add_argument("--out", help="also write the markdown to this file")
    ap.add_argument("--keep-logs", action="store_true", help="keep the run directory (process logs, bodies)")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.targets = [t for t in args.targets.split(",") if t]
    bad = [s for s in args.scenarios if s not in BY_NAME] + [t for t in args.targets if t not in ALL_TARGETS]
    if bad:
        ap.error(f"unknown scenario or target: {', '.join(bad)}")
    if args.duration < 1:
        ap.error("--duration must be at least 1 second")
    return args


def log(t0: float, msg: str) -> None:
    print(f"[{time.monotonic() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def redacted(url: str) -> str:
    """A Redis URL without its credentials, for the notes."""
    u = urlsplit(url)
    return f"{u.scheme}://{u.hostname}:{u.port or 6379}{u.path}"


def redis_client(url: str) -> Any:
    import redis  # only when a run needs it

    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)


def redis_answers(url: str) -> bool:
    try:
        with contextlib.closing(redis_client(url)) as r:
            return bool(r.ping())
    except Exception:  # any failure means "not usable here"
        return False


def progress(row: Row) -> str:
    r = row.result
    if r is None:
        return "; ".join(row.notes) or "no result"
    cpu = "" if row.cpu_ms is None else f", CPU {row.cpu_ms:.3f} ms/req"
    return f"{r.rps:,.0f} req/s, p50 {row.p50 or 0:.2f} ms{cpu}, errors {r.errors}"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.budget
        self.run_id = time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(2)
        self.dir = Path(tempfile.mkdtemp(prefix="sybench-"))
        self.key = "sk-bench-" + secrets.token_hex(12)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.redis_url = ""
        self.prefix = f"sybench:{self.run_id}:"
        self.use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and have_wrk())
        self.notes: list[str] = []
        self.idle_rss: float | None = None
        self.start_rss: float | None = None
        self.scenarios = [BY_NAME[s] for s in args.scenarios]
        self.targets = [t for t in ALL_TARGETS if t in args.targets]
        self.failed = False

    # -- processes -------------------------------------------------------------------------
    def start(self, name: str, argv: list[str], port: int, env: dict[str, str] | None = None) -> None:
        with open(self.dir / f"{name}.log", "wb") as out:
            # Own session: a Ctrl-C reaches only this runner, which then stops everything in order.
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=env,
                start_new_session=True,
                preexec_fn=procs.die_with_parent,
            )
        self.procs[name] = proc
        self.ports[name] = port
        try:
            procs.wait_port(port, proc)
        except RuntimeError as e:
            tail = (self.dir / f"{name}.log").read_text(errors="replace").strip().splitlines()[-15:]
            raise RuntimeError("\n".join([f"{name}: {e}", *tail])) from None

    def start_redis(self) -> None:
        url = self.args.redis_url or DEFAULT_REDIS
        if redis_answers(url):
            self.redis_url = url
            return
        if self.args.redis_url:
            raise SystemExit(f"bench: no Redis answers at {redacted(url)}")
        if shutil.which("redis-server") is None:
            self.notes.append("no Redis answered and redis-server is not installed: usage used the in-process store")
            return
        port = procs.free_port()
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.start("redis", argv, port)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        self.notes.append("Redis: a private redis-server started for this run (nothing answered on 6379)")

    def start_upstream(self) -> None:
        specs, pace = [], self.args.stream_pace_ms
        for vendor, opts in (
            ("fast", f"chunks={CHUNKS}"),
            ("slow", f"chunks={CHUNKS},latency_ms={SLOW_LATENCY_MS}"),
            ("trickle", f"chunks={SLOW_STREAM_CHUNKS},chunk_delay_ms={pace}"),
        ):
            self.ports[vendor] = procs.free_port()
            specs += ["--serve", f"{vendor}:{self.ports[vendor]}:{opts}"]
        self.start("upstream", [sys.executable, "-m", "bench.upstream", *specs], self.ports["fast"])
        for vendor in ("slow", "trickle"):
            procs.wait_port(self.ports[vendor], self.procs["upstream"])

    def upstream_url(self, vendor: str) -> str:
        return f"http://127.0.0.1:{self.ports[vendor]}/v1"

    def start_bare(self, target: str) -> None:
        port = procs.free_port()
        routes = [arg for v in ("fast", "slow", "trickle") for arg in ("--upstream", f"{v}={self.upstream_url(v)}")]
        argv = [sys.executable, "-m", "bench.bare_proxy", "--client", target.removeprefix("bare-"), "--port", str(port)]
        self.start(target, [*argv, *routes], port)

    def start_gateway(self) -> None:
        port = procs.free_port()
        env = dict(os.environ)
        env.update(
            SYBENCH_CLIENT_KEY=self.key,
            SYBENCH_FAST_URL=self.upstream_url("fast"),
            SYBENCH_SLOW_URL=self.upstream_url("slow"),
            SYBENCH_TRICKLE_URL=self.upstream_url("trickle"),
            SYBENCH_REDIS_URL=self.redis_url,
            SYBENCH_REDIS_PREFIX=self.prefix,
        )
        argv = [sys.executable, "-m", "gateway", "serve", "--config", self.args.config, "--host", "127.0.0.1"]
        self.start(GATEWAY, [*argv, "--port", str(port), "--workers", str(self.args.workers)], port, env)
        self.wait_ready(port)
        pid = self.procs[GATEWAY].pid
        time.sleep(0.5)  # let start-up settle before the idle readings
        self.start_rss = procs.rss_mb(pid) / self.args.workers
        # What a worker holds once it has served: lazily loaded pieces (a tokenizer) are resident from then on.
        self.post(self.url(GATEWAY, "fast"), body(BY_NAME["chat-32"], GATEWAY))
        time.sleep(0.5)
        self.idle_rss = procs.rss_mb(pid) / self.args.workers

    def post(self, url: str, data: bytes) -> tuple[int, bytes]:
        """One request through urllib (outside any measurement): status and the start of the body."""
        headers = {"authorization": f"Bearer {self.key}", "content-type": "application/json"}
        req = urllib.request.Request(url, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read(2000)
        except urllib.error.HTTPError as e:
            return e.code, e.read(2000)

    def wait_ready(self, port: int) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError("the gateway did not become ready within 15 s")

    def stop_all(self, keep: str = "") -> None:
        for name in reversed(list(self.procs)):
            if name != keep:
                procs.stop(self.procs[name])

    # -- measuring -------------------------------------------------------------------------
    def url(self, target: str, vendor: str) -> str:
        port = self.ports[vendor] if target == DIRECT else self.ports[target]
        return f"http://127.0.0.1:{port}/v1/chat/completions"

    def drive(self, sc: Scenario, load: Load) -> tuple[Result, bool]:
        """Run one load; the flag says whether the Python generator (which costs CPU) was used for a rate row."""
        if sc.load == "burst":
            return python_burst(load, self.args.ramp), False
        if sc.load == "ttfb":
            return python_loop(load, max_requests=20_000), False
        if self.use_wrk:
            return wrk(load), False
        return python_loop(load), True

    def cost(self, sc: Scenario) -> float:
        if sc.load == "burst":
            return self.args.ramp + (SLOW_STREAM_CHUNKS + 3) * self.args.stream_pace_ms / 1000 + 3
        return self.args.warmup + SETTLE_S + self.args.duration + 1

    def measure(self, sc: Scenario, target: str) -> Row:
        clients = self.args.streams if sc.load == "burst" else sc.clients
        row = Row(sc, target, clients)
        if time.monotonic() + self.cost(sc) > self.deadline:
            row.notes.append("skipped: over the time budget")
            return row
        # The TTFB probe needs fewer seconds: one client, thousands of samples.
        seconds = min(self.args.duration, 2) if sc.load == "ttfb" else self.args.duration
        url, path = self.url(target, sc.vendor), body_file(self.dir, sc, target)
        load = Load(url, path, self.key, clients, seconds, stagger_ms=sc.stagger_ms)
        pid = None if target == DIRECT else self.procs[target].pid
        try:
            if self.args.warmup and sc.load != "burst":
                self.drive(sc, dataclasses.replace(load, duration=self.args.warmup))
                # Right after hundreds of connections close at once, the next second shows stragglers of up to
                # seconds here for every proxy (the bare ones too): measure after the machine has settled.
                time.sleep(SETTLE_S if load.clients >= MANY_CLIENTS else 0.2)
            if pid is not None:
                procs.reset_peak(pid)
                row.rss_before_mb = procs.rss_mb(pid)
                cpu0 = procs.cpu_seconds(pid)
            others = procs.Others.now()
            row.result, row.python_load = self.drive(sc, load)
            row.other_cpus = procs.Others.now().cpus_since(others)
            if pid is not None:
                if row.result.requests:
                    row.cpu_ms = (procs.cpu_seconds(pid) - cpu0) * 1000 / row.result.requests
                row.peak_rss_mb = procs.peak_rss_mb(pid)
        except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
            row.notes.append(f"failed: {e}")
            self.failed = True
        if target != DIRECT and self.procs[target].poll() is not None:
            row.notes.append(f"the process exited ({self.procs[target].returncode})")
            self.failed = True
        return row

    def run_scenario(self, sc: Scenario) -> list[Row]:
        rows = []
        for target in (t for t in self.targets if t in sc.targets):
            row = self.measure(sc, target)
            log(self.t0, f"{sc.name:13} {target:19} {progress(row)}")
            rows.append(row)
        add_deltas(rows)
        return rows

    # -- the whole run ---------------------------------------------------------------------
    def run(self) -> str:
        raise_fd_limit()
        self.fit_streams()
        if self.args.loadgen == "wrk" and not have_wrk():
            raise RuntimeError(WRK_HELP)
        if self.args.loadgen == "auto" and not self.use_wrk:
            print(f"bench: {WRK_HELP}; using the Python load generator (it shares the CPU)", file=sys.stderr)
        self.start_redis()
        self.start_upstream()
        for target in (t for t in BARE if t in self.targets):
            missing = [m for m in CLIENT_MODULES[target] if importlib.util.find_spec(m) is None]
            if missing:
                self.targets.remove(target)
                self.notes.append(f"{target} not run: `pip install {' '.join(missing).replace('_', '-')}`")
                continue
            self.start_bare(target)
        if GATEWAY in self.targets:
            self.start_gateway()
        log(self.t0, f"started: {', '.join(self.procs)}; run directory {self.dir}")
        rows: list[Row] = []
        for sc in self.scenarios:
            rows += self.run_scenario(sc)
        self.check_gateway_extras()
        return self.render(rows)

    def fit_streams(self) -> None:
        """Each stream holds two descriptors in the gateway; fewer streams if the limit can't allow it."""
        import resource

        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if 2 * self.args.streams + FD_RESERVE > limit:
            self.args.streams = max(1, (limit - FD_RESERVE) // 2)
            self.notes.append(f"slow streams cut to {self.args.streams:,} by the open-files limit ({limit:,})")

    def check_gateway_extras(self) -> None:
        """Say whether metrics and usage were really on, so a table is never read as more than it was."""
        if GATEWAY not in self.procs:
            return
        pid = self.procs[GATEWAY].pid
        self.notes.append(f"gateway RSS after the run (idle again): {procs.rss_mb(pid):,.0f} MB")
        if "prompt-100k" in self.args.scenarios:
            self.check_overflow()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[GATEWAY]}/metrics", timeout=5) as resp:
                text = resp.read().decode()
            series = sum(1 for line in text.splitlines() if line.startswith("switchyard_"))
            self.notes.append(f"metrics on: /metrics served {series:,} switchyard_* samples")
        except (urllib.error.URLError, OSError) as e:
            self.notes.append(f"metrics: /metrics did not answer ({e}); this gateway build has no metrics yet")

    def check_overflow(self) -> None:
        """One prompt over the context window: refused (overflow checking on) or forwarded (not in this build)."""
        words = int(WORDS_100K_TOKENS * 1.4)  # about 140k tokens, over the 128k window
        sc = Scenario("over", "", "fast", False, 1, "rate", prompt_words=words)
        try:
            status, text = self.post(self.url(GATEWAY, "fast"), body(sc, GATEWAY))
        except (urllib.error.URLError, OSError) as e:
            self.notes.append(f"overflow check: the probe failed ({e})")
            return
        if status == 400 and b"context_length_exceeded" in text:
            self.notes.append("overflow check on: a ~140k-token prompt was refused with 400 context_length_exceeded")
        else:
            self.notes.append(
                f"overflow check NOT on in this build: a ~140k-token prompt got HTTP {status}, not 400 "
                "context_length_exceeded, so the prompt-100k row measures no token counting"
            )

    def count_and_clean_usage(self) -> None:
        """After the gateway stopped (flushing its buffer): how many usage keys it wrote; then delete them."""
        if not self.redis_url or GATEWAY not in self.procs:
            return
        try:
            with contextlib.closing(redis_client(self.redis_url)) as r:
                keys = list(r.scan_iter(match=self.prefix + "*", count=1000))
                for i in range(0, len(keys), 500):
                    r.delete(*keys[i : i + 500])
        except Exception as e:  # the bench result stands; only this note is lost
            self.notes.append(f"usage: could not read Redis afterwards ({type(e).__name__})")
            return
        where = f"{redacted(self.redis_url)} under `{self.prefix}`"
        if keys:
            self.notes.append(f"usage to Redis on: {len(keys)} keys written to {where} (deleted after the run)")
        else:
            self.notes.append(f"usage: nothing reached {where}; this gateway build does not write usage to Redis yet")

    def render(self, rows: list[Row]) -> str:
        parts = [
            f"# Switchyard bench, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            "",
            "`" + " ".join(["python -m bench", *self.args.argv]) + "`",
            "",
            render_rows(rows),
            "",
            render_goals(rows, self.idle_rss),
        ]
        choice = client_choice(rows)
        if choice:
            parts += ["", choice]
        return "\n".join(parts)

    def render_notes(self) -> str:
        lines = [f"- {n}" for n in self.machine() + self.method() + self.notes]
        return "\n".join(["", "Notes:", *lines, ""])

    def machine(self) -> list[str]:
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if "model name" in line
            ),
            platform.processor() or "unknown CPU",
        )
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout
        return [
            f"machine: {os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, Python {platform.python_version()}, "
            f"commit {commit.strip() or 'unknown'}; every process shares these CPUs, so req/s is the machine's, "
            "CPU ms/req is the proxy's own"
        ]

    def method(self) -> list[str]:
        gen = "wrk (1 thread)" if self.use_wrk else "the Python load generator (its CPU competes with the proxy)"
        idle = (
            "—"
            if self.idle_rss is None
            else f"{self.start_rss:,.0f} MB, after its first request {self.idle_rss:,.0f} MB"
        )
        return [
            f"rate rows: {gen}, closed loop: {self.args.warmup} s warm-up, a pause ({SETTLE_S:g} s at 256 clients), "
            f"then {self.args.duration} s measured; "
            "ttfb rows: bench/loadgen.py on aiohttp, slow-stream rows: on bare sockets, each in its own process",
            f"gateway: `switchyard serve --config {os.path.relpath(self.args.config, ROOT)} --workers "
            f"{self.args.workers}`, access log off, auth + routing + usage + metrics as configured; idle RSS per "
            f"worker after start-up {idle}",
            "CPU ms/req: utime+stime (+ reaped children) of the proxy's process tree from /proc/<pid>/stat over the "
            "measured window, divided by completed requests; peak RSS: VmHWM of the tree, reset per row",
            "added p50/p99: the row's percentile minus the direct row's in the same scenario and run",
            f"upstream: MockUpstream (recording off) in one uvicorn process; fast: {CHUNKS} chunks; slow: "
            f"{SLOW_LATENCY_MS} ms before answering; trickle: {SLOW_STREAM_CHUNKS} chunks, "
            f"{self.args.stream_pace_ms:g} ms before each; slow streams start evenly over {self.args.ramp:g} s",
            f"slow-256: each client's first request starts at a random moment within {SLOW_LATENCY_MS} ms, as "
            "independent clients' do; started together, a closed loop keeps all 256 in lockstep and every "
            f"{SLOW_LATENCY_MS} ms the proxy gets 256 requests in the same millisecond (then the added p50 is about "
            "half of 256 x its CPU per request)",
            f"100k prompt: {WORDS_100K_TOKENS:,} words of generated prose, about 100,050 o200k_base tokens, "
            "max_tokens 16, into a 128,000-token context window",
        ]

    def close(self) -> None:
        # The gateway flushes its usage buffer on SIGTERM; Redis goes last so the count can be read.
        self.stop_all(keep="redis")
        self.count_and_clean_usage()
        if "redis" in self.procs:
            procs.stop(self.procs["redis"])
        if self.args.keep_logs or self.failed:
            print(f"bench: logs and bodies kept in {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every process we started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Bench(args)
    try:
        table = bench.run()
    except (RuntimeError, OSError) as e:
        print(f"bench: {e}", file=sys.stderr)
        bench.failed = True
        return 2
    finally:
        bench.close()
    text = table + "\n" + bench.render_notes()
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 1 if bench.failed else 0
