"""``python -m bench``: what the gateway adds to every request, measured against the upstream and a bare proxy.

One run starts simulated upstreams (OpenAI and Anthropic dialects), the gateway as in production
(auth, routing, usage to Redis, metrics; access log off), the bare proxies, the peers that are
installed (LiteLLM, Portkey), and a load generator in its own process; then, scenario by scenario
and target by target: a warm-up, a CPU and peak-RSS reading of the proxy's process tree from /proc,
the measured load, a second reading (and, for streams, a one-client probe of the time to first byte).
With ``--rounds N`` the gateway and the bare proxy are measured N times, alternately, in the scenarios
with a CPU target, and the ratio is taken from the medians. It prints markdown tables (``--out``
writes them to a file too). Everything is bounded: each load by a duration and a timeout, the whole
run by ``--budget`` seconds (rows past it are marked skipped).
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
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import peers, procs
from bench.bare_proxy import UPSTREAM_KEY
from bench.loadgen import raise_fd_limit
from bench.loads import WRK_HELP, Load, Result, have_wrk, python_burst, python_loop, wrk
from bench.report import Row, add_deltas, client_choice, render_goals, render_rows, render_summary
from bench.scenarios import (
    ALL_TARGETS,
    ANTHROPIC_VENDORS,
    BARE,
    BY_NAME,
    CHUNKS,
    DIRECT,
    FLOOR_BARE,
    GATEWAY,
    GROUPS,
    PEERS,
    SLOW_LATENCY_MS,
    SLOW_STREAM_CHUNKS,
    SLOW_STREAM_PACE_MS,
    WORDS_100K_TOKENS,
    Scenario,
    body,
    body_file,
    request,
    select,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
# Slow streams start evenly over this many seconds: about the rate one worker can set streams up at, so the
# row measures holding 5,000 streams, not a connection storm (wrk-style rows measure throughput).
BURST_RAMP_S = 3.0
FD_RESERVE = 512
SETTLE_S = 1.0
MANY_CLIENTS = 128
TTFB_MAX_REQUESTS = 5000
# The simulated upstreams: name, options (bench/upstream.py spec) built from the run's settings.
VENDORS = ("fast", "slow", "trickle", "anthropic")
CLIENT_MODULES = {
    "bare-aiohttp": ["aiohttp"],
    "bare-httpx": ["httpx"],
    "bare-httpx-aiohttp": ["httpx", "httpx_aiohttp"],
    "bare-switchyard": ["httptools"],
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "bench" / "config.yaml"), help="gateway config (SYBENCH_* expanded)")
    ap.add_argument("--workers", type=int, default=1, help="gateway workers (figures are for the whole tree)")
    ap.add_argument(
        "--duration", type=float, default=3, help="measured seconds per row (default 3; wrk rounds to whole seconds)"
    )
    ap.add_argument("--warmup", type=int, default=1, help="warm-up seconds before each row (default 1)")
    ap.add_argument("--streams", type=int, default=5000, help="concurrent slow streams (default 5000)")
    ap.add_argument("--ramp", type=float, default=BURST_RAMP_S, help="seconds over which slow streams start")
    ap.add_argument("--stream-pace-ms", type=float, default=SLOW_STREAM_PACE_MS, help="pause before each slow chunk")
    ap.add_argument(
        "--scenarios",
        "--only",
        dest="scenarios",
        default="all",
        help="comma-separated scenario names, globs (`*-stream-32`) or groups ("
        + ", ".join(f"{g}: {' '.join(n)}" if g != "all" else g for g, n in GROUPS.items())
        + "); scenarios: "
        + ", ".join(BY_NAME),
    )
    ap.add_argument("--targets", default=",".join(ALL_TARGETS), help="subset of: " + ", ".join(ALL_TARGETS))
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure the gateway and the bare aiohttp proxy this many times, alternately, in the scenarios with a "
        "CPU target; their CPU/request (and the ratio) is the median of the rounds (default 1)",
    )
    ap.add_argument(
        "--ttfb-seconds",
        type=float,
        default=1.0,
        help="after each stream row, a one-client probe of the time to first byte for this long (0: off)",
    )
    ap.add_argument(
        "--peer-duration",
        type=float,
        default=10,
        help="measured seconds of the peers' rate rows (default 10: at their speed here, 3 s complete few requests)",
    )
    ap.add_argument("--litellm", help="command that starts LiteLLM's proxy (default: looked for; see bench/README.md)")
    ap.add_argument("--portkey", help="command that starts Portkey's gateway (default: looked for)")
    ap.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto", help="rate scenarios' generator")
    ap.add_argument("--redis-url", help=f"Redis for usage (default {DEFAULT_REDIS}, else a private redis-server)")
    ap.add_argument("--budget", type=float, default=900.0, help="seconds the whole run may take (default 900)")
    ap.add_argument("--out", help="also write the markdown to this file")
    ap.add_argument("--keep-logs", action="store_true", help="keep the run directory (process logs, bodies)")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args.scenarios = select(args.scenarios)
    except ValueError as e:
        ap.error(f"unknown scenario, glob or group: {e}")
    args.targets = [t for t in args.targets.split(",") if t]
    bad = [t for t in args.targets if t not in ALL_TARGETS]
    if bad:
        ap.error(f"unknown target: {', '.join(bad)}")
    if args.duration <= 0:
        ap.error("--duration must be positive")
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
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


def combine(rounds: list[Row]) -> Row:
    """One row from a target's rounds: the round with the median CPU/request stands for them, its CPU the median
    of all, its errors those of all rounds; the notes list each round's CPU."""
    measured = [r for r in rounds if r.cpu_ms is not None and r.result is not None]
    if not measured:
        return rounds[0]
    median = statistics.median(r.cpu_ms for r in measured if r.cpu_ms is not None)
    row = min(measured, key=lambda r: abs((r.cpu_ms or 0) - median))
    first = rounds[0]
    row.ttfb_p50_ms, row.ttfb_p99_ms = first.ttfb_p50_ms, first.ttfb_p99_ms
    row.cpu_ms = median
    row.rounds = [r.cpu_ms for r in rounds]
    errors = sum(r.result.errors for r in rounds if r.result is not None)
    if row.result is not None and errors != row.result.errors:
        kinds = "; ".join(r.result.error_kinds for r in rounds if r.result is not None and r.result.error_kinds)
        row.result = dataclasses.replace(row.result, errors=errors, error_kinds=kinds)
    row.notes += [n for r in rounds if r is not row for n in r.notes if n not in row.notes]
    return row


SCENARIO_NOTES = {
    "slow-256": f"slow-256: each client's first request starts at a random moment within {SLOW_LATENCY_MS} ms, as "
    "independent clients' do; started together, a closed loop keeps all 256 in lockstep and every "
    f"{SLOW_LATENCY_MS} ms the proxy gets 256 requests in the same millisecond (then the added p50 is about "
    "half of 256 x its CPU per request)",
    "prompt-100k": f"100k prompt: {WORDS_100K_TOKENS:,} words of generated prose, about 100,050 o200k_base tokens, "
    "max_tokens 16, into a 128,000-token context window",
    "embeddings-32": "embeddings: the upstream answers 1,536 floats as JSON (~33 KB), which the bare proxy relays "
    "unparsed",
}


def node_version() -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


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
        self.peer_versions: dict[str, str] = {}

    # -- processes -------------------------------------------------------------------------
    def start(
        self, name: str, argv: list[str], port: int, env: dict[str, str] | None = None, timeout: float = 15.0
    ) -> None:
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
            procs.wait_port(port, proc, timeout)
        except RuntimeError as e:
            procs.stop(proc)
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
        options = {
            "fast": f"chunks={CHUNKS}",
            "slow": f"chunks={CHUNKS},latency_ms={SLOW_LATENCY_MS}",
            "trickle": f"chunks={SLOW_STREAM_CHUNKS},chunk_delay_ms={pace}",
            "anthropic": f"dialect=anthropic,chunks={CHUNKS}",
        }
        for vendor in VENDORS:
            self.ports[vendor] = procs.free_port()
            specs += ["--serve", f"{vendor}:{self.ports[vendor]}:{options[vendor]}"]
        self.start("upstream", [sys.executable, "-m", "bench.upstream", *specs], self.ports["fast"])
        for vendor in VENDORS[1:]:
            procs.wait_port(self.ports[vendor], self.procs["upstream"])

    def upstream_url(self, vendor: str) -> str:
        return f"http://127.0.0.1:{self.ports[vendor]}/v1"

    def start_bare(self, target: str) -> None:
        port = procs.free_port()
        routes = [arg for v in VENDORS for arg in ("--upstream", f"{v}={self.upstream_url(v)}")]
        routes += [arg for v in ANTHROPIC_VENDORS for arg in ("--anthropic", v)]
        argv = [sys.executable, "-m", "bench.bare_proxy", "--client", target.removeprefix("bare-"), "--port", str(port)]
        self.start(target, [*argv, *routes], port)

    def start_peers(self) -> None:
        """LiteLLM and Portkey where installed (else a note saying how); a peer that fails to start is noted."""
        finders = {
            "litellm": (peers.find_litellm, self.args.litellm),
            "portkey": (peers.find_portkey, self.args.portkey),
        }
        for peer in (p for p in PEERS if p in self.targets):
            find, explicit = finders[peer]
            found = find(explicit)
            if found is None:
                self.targets.remove(peer)
                help_text = peers.LITELLM_HELP if peer == "litellm" else peers.PORTKEY_HELP
                self.notes.append(f"{peer} not run: not installed ({help_text})")
                continue
            self.peer_versions[peer] = peers.version(found, peer)
            port = procs.free_port()
            try:
                if peer == "litellm":
                    cfg = self.dir / "litellm.yaml"
                    urls = {v: self.upstream_url(v) for v in VENDORS if v not in ANTHROPIC_VENDORS}
                    cfg.write_text(
                        peers.litellm_config(urls, self.upstream_url("anthropic").removesuffix("/v1"), self.key)
                    )
                    argv = [*found.argv, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port)]
                    env = dict(os.environ, **peers.LITELLM_ENV)
                    self.start(peer, [*argv, "--num_workers", "1"], port, env, timeout=120)
                else:
                    self.start(peer, [*found.argv, f"--port={port}", "--headless"], port, timeout=60)
            except RuntimeError as e:
                self.targets.remove(peer)
                self.notes.append(f"{peer} not run: it did not start ({str(e).splitlines()[0]})")
                self.procs.pop(peer, None)

    def start_gateway(self) -> None:
        port = procs.free_port()
        env = dict(os.environ)
        env.update(
            SYBENCH_CLIENT_KEY=self.key,
            SYBENCH_FAST_URL=self.upstream_url("fast"),
            SYBENCH_SLOW_URL=self.upstream_url("slow"),
            SYBENCH_TRICKLE_URL=self.upstream_url("trickle"),
            SYBENCH_ANTHROPIC_URL=self.upstream_url("anthropic").removesuffix("/v1"),  # the adapter wants the origin
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
        self.post(self.url(GATEWAY, BY_NAME["chat-32"]), body(BY_NAME["chat-32"], GATEWAY))
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
    def url(self, target: str, sc: Scenario) -> str:
        port = self.ports[sc.vendor] if target == DIRECT else self.ports[target]
        return f"http://127.0.0.1:{port}" + request(sc, target, "").path

    def load(self, sc: Scenario, target: str) -> Load:
        """The measured load of one row: URL, body file, headers (the key as the API's clients send it)."""
        key, extra = self.key, ()
        if target == "portkey":  # Portkey is told the upstream per request and passes the upstream's key on
            key, extra = UPSTREAM_KEY, peers.portkey_headers(sc, self.upstream_url(sc.vendor))
        req = request(sc, target, key, extra)
        clients = self.args.streams if sc.load == "burst" else sc.clients
        # The TTFB probe needs fewer seconds: one client, thousands of samples.
        seconds = min(self.args.duration, 2) if sc.load == "ttfb" else self.args.duration
        if target in PEERS and sc.load == "rate":
            seconds = max(seconds, self.args.peer_duration)
        path = body_file(self.dir, req.body)
        return Load(self.url(target, sc), path, req.headers, clients, seconds, stagger_ms=sc.stagger_ms, end=req.end)

    def drive(self, sc: Scenario, load: Load) -> tuple[Result, bool]:
        """Run one load; the flag says whether the Python generator (which costs CPU) was used for a rate row."""
        if sc.load == "burst":
            return python_burst(load, self.args.ramp), False
        if sc.load == "ttfb":
            return python_loop(load, max_requests=20_000), False
        if load.clients == 1 and load.end:  # a stream row's TTFB probe
            return python_loop(load, max_requests=TTFB_MAX_REQUESTS), False
        if self.use_wrk:
            return wrk(load), False
        return python_loop(load), True

    def cost(self, sc: Scenario, seconds: float) -> float:
        if sc.load == "burst":
            return self.args.ramp + (SLOW_STREAM_CHUNKS + 3) * self.args.stream_pace_ms / 1000 + 3
        wall = max(1, round(seconds)) if self.use_wrk else seconds
        return self.args.warmup + SETTLE_S + wall + 1 + (self.probe_seconds(sc) and self.probe_seconds(sc) + 1)

    def probe_seconds(self, sc: Scenario) -> float:
        return self.args.ttfb_seconds if sc.stream and sc.load == "rate" else 0.0

    def measure(self, sc: Scenario, target: str, probe: bool = True) -> Row:
        """One row: warm-up, CPU and RSS readings around the measured load, then (streams) the TTFB probe."""
        load = self.load(sc, target)
        row = Row(sc, target, load.clients)
        why = peers.unsupported(target, sc)
        if why:
            row.notes.append(why)
            return row
        if target != DIRECT and self.procs[target].poll() is not None:
            row.notes.append(f"not run: the process had exited ({self.procs[target].returncode})")
            return row
        if time.monotonic() + self.cost(sc, load.duration) > self.deadline:
            row.notes.append("skipped: over the time budget")
            return row
        pid = None if target == DIRECT else self.procs[target].pid
        try:
            if self.args.warmup and sc.load != "burst":
                self.drive(sc, dataclasses.replace(load, duration=self.args.warmup))
                # Right after hundreds of connections close at once, the next second shows stragglers of up to
                # seconds here for every proxy (the bare ones too): measure after the machine has settled.
                time.sleep(SETTLE_S if load.clients >= MANY_CLIENTS else 0.2)
                if pid is not None:
                    # A proxy slower than the warm-up's pace still works through the requests the warm-up left
                    # (a server does not drop them when the client goes): measure once that backlog is done.
                    waited = procs.wait_idle(pid)
                    if waited > 1:
                        row.notes.append(f"{waited:.0f} s after the warm-up until idle")
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
            if probe and self.probe_seconds(sc):
                # Outside the measured window: one client, so the first byte is not queued behind other streams.
                ttfb = self.drive(sc, dataclasses.replace(load, clients=1, duration=self.probe_seconds(sc)))[0]
                row.ttfb_p50_ms, row.ttfb_p99_ms = ttfb.ttfb_p50_ms, ttfb.ttfb_p99_ms
                if ttfb.errors:
                    row.notes.append(f"TTFB probe errors: {ttfb.error_kinds}")
        except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
            row.notes.append(f"failed: {e}")
            self.failed = self.failed or target not in PEERS  # a peer's failure is its row's, not the run's
        if target != DIRECT and self.procs[target].poll() is not None:
            row.notes.append(f"the process exited ({self.procs[target].returncode})")
            self.failed = self.failed or target not in PEERS
        elif pid is not None:
            procs.wait_idle(pid, limit=30)  # what the load left in flight must not load the next row's machine
        return row

    def run_scenario(self, sc: Scenario) -> list[Row]:
        """Every target once, in table order; with --rounds, the gateway and the floor alternately, N times each."""
        targets = [t for t in self.targets if t in sc.targets]
        paired = [t for t in (FLOOR_BARE, GATEWAY) if t in targets] if self.rounds_for(sc) > 1 else []
        done: dict[str, Row] = {}
        for target in targets:
            if target in paired:
                if target == paired[0]:
                    done.update(self.alternate(sc, paired))
                continue
            done[target] = row = self.measure(sc, target)
            log(self.t0, f"{sc.name:13} {target:19} {progress(row)}")
        rows = [done[t] for t in targets]
        add_deltas(rows)
        return rows

    def rounds_for(self, sc: Scenario) -> int:
        return self.args.rounds if sc.cpu_target is not None and sc.load == "rate" else 1

    def alternate(self, sc: Scenario, targets: list[str]) -> dict[str, Row]:
        """Rounds of floor, gateway, floor, gateway...: each target's row is its median-CPU round."""
        rounds: dict[str, list[Row]] = {t: [] for t in targets}
        for i in range(self.rounds_for(sc)):
            for target in targets:
                row = self.measure(sc, target, probe=i == 0)
                log(self.t0, f"{sc.name:13} {target:19} round {i + 1}: {progress(row)}")
                rounds[target].append(row)
        return {t: combine(rs) for t, rs in rounds.items()}

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
        self.start_peers()
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
            status, text = self.post(self.url(GATEWAY, sc), body(sc, GATEWAY))
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
            render_goals(rows, self.idle_rss, self.args.rounds),
        ]
        summary = render_summary(rows, self.args.rounds)
        if summary:
            parts += ["", summary]
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
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        if commit and dirty:
            commit += " with uncommitted changes"
        return [
            f"machine: {os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, Python {platform.python_version()}, "
            f"commit {commit or 'unknown'}; every process shares these CPUs, so req/s is the machine's, "
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
            f"then {self.args.duration:g} s measured; "
            "ttfb rows: bench/loadgen.py on aiohttp, slow-stream rows: on bare sockets, each in its own process",
            f"gateway: `switchyard serve --config {os.path.relpath(self.args.config, ROOT)} --workers "
            f"{self.args.workers}`, access log off, auth + routing + usage + metrics as configured; idle RSS per "
            f"worker after start-up {idle}",
            "CPU ms/req: utime+stime (+ reaped children) of the proxy's process tree from /proc/<pid>/stat over the "
            "measured window, divided by completed requests; x floor: that over the bare aiohttp proxy's in the same "
            "scenario; peak RSS: VmHWM of the tree, reset per row",
            self.rounds_note(),
            "added p50/p99: the row's percentile minus the direct row's in the same scenario and run; TTFB: time to "
            "the first body byte, for streams from a one-client probe after the measured window "
            f"({self.args.ttfb_seconds:g} s; its CPU is not counted), in parentheses the added p50",
            "streams must reach their proper end, else they count as errors: `data: [DONE]` for chat and "
            "completions, a last event `response.completed` (Responses API) or `message_stop` (Messages API)",
            "native rows (responses-stream, messages-stream): the bare proxy relays the same request to the same "
            "upstream path, so both relay the same bytes; translated rows (messages-to-openai, "
            "responses-to-anthropic): direct and the bare proxy send the upstream request the gateway makes (chat "
            "with usage asked for; a Messages request) and relay the upstream's stream as it is, so the ratio "
            "prices the translation",
            f"upstreams: MockUpstream (recording off) in one uvicorn process; fast (OpenAI: chat, completions, "
            f"embeddings, /v1/responses): {CHUNKS} chunks; anthropic (Messages API): {CHUNKS} text deltas; slow: "
            f"{SLOW_LATENCY_MS} ms before answering; trickle: {SLOW_STREAM_CHUNKS} chunks, "
            f"{self.args.stream_pace_ms:g} ms before each; slow streams start evenly over {self.args.ramp:g} s",
            *self.peer_notes(),
        ] + [note for name, note in SCENARIO_NOTES.items() if name in self.args.scenarios]

    def rounds_note(self) -> str:
        if self.args.rounds == 1:
            return "one round: each row measured once (`--rounds 3` alternates gateway and floor for steadier ratios)"
        return (
            f"{self.args.rounds} alternating rounds (bare aiohttp proxy, gateway, bare, gateway, ...) in the scenarios "
            "with a CPU target: their CPU ms/req is the median of the rounds (each round's figure in the notes), "
            "latencies are the median-CPU round's; every other row is measured once"
        )

    def peer_notes(self) -> list[str]:
        notes = []
        if self.peer_versions:
            notes.append(
                f"peers' rate rows: {max(self.args.duration, self.args.peer_duration):g} s measured "
                "(`--peer-duration`), as few of their requests complete in a shorter window; not run in streams-5000"
            )
        if "litellm" in self.peer_versions:
            notes.append(
                f"LiteLLM {self.peer_versions['litellm']}: `litellm --config <generated> --num_workers 1`, one model "
                "entry per name the scenarios send, at the same upstreams; master key set, no database, no cache, "
                "its defaults otherwise"
            )
        if "portkey" in self.peer_versions:
            notes.append(
                f"Portkey gateway {self.peer_versions['portkey']} on Node {node_version()}: `gateway --port=N "
                "--headless`, each request addressed with x-portkey-provider and x-portkey-custom-host and the "
                "upstream's key, the model named as the upstream knows it"
            )
        return notes

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
