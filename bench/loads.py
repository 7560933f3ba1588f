"""Running one measured load: wrk (little CPU) or the Python load generator, each in its own process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson

WRK_SCRIPT = Path(__file__).with_name("wrk.lua")
WRK_HELP = "wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk` (macOS)"


@dataclass
class Load:
    url: str
    body: Path
    headers: tuple[tuple[str, str], ...]  # the key among them, as the API's clients send it
    clients: int
    duration: float
    timeout: float = 30.0
    stagger_ms: int = 0
    end: str | None = None  # a stream's proper end ("[DONE]", "response.completed", ...); None: not a stream


@dataclass
class Result:
    requests: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    ttfb_p50_ms: float | None = None
    ttfb_p99_ms: float | None = None
    max_open: int = 0
    error_kinds: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _run(argv: list[str], limit: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=limit, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout


def parse_wrk(stdout: str) -> Result:
    """The JSON line bench/wrk.lua prints at the end of a run."""
    line = next((x for x in stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result line: {stdout.strip()[-300:]}")
    d = orjson.loads(line[len("WRKJSON ") :])
    kinds = {k: d.get(k, 0) for k in ("connect", "read", "write", "status", "timeout", "unended") if d.get(k)}
    return Result(
        requests=d["requests"],
        seconds=d["duration_us"] / 1e6,
        p50_ms=d["p50_us"] / 1000 if d["requests"] else None,
        p99_ms=d["p99_us"] / 1000 if d["requests"] else None,
        errors=sum(kinds.values()),
        error_kinds=", ".join(f"{k} {v}" for k, v in kinds.items()),
    )


def wrk(load: Load) -> Result:
    # One thread: wrk's event loop keeps hundreds of connections busy on a fraction of a core.
    seconds = max(1, round(load.duration))
    argv = ["wrk", "-t1", f"-c{load.clients}", f"-d{seconds}s", f"--timeout={int(load.timeout)}s"]
    argv += ["-s", str(WRK_SCRIPT), load.url, "--", str(load.body), *(f"{k}: {v}" for k, v in load.headers)]
    env = dict(os.environ, SYBENCH_STAGGER_MS=str(load.stagger_ms), SYBENCH_CONNECTIONS=str(load.clients))
    env["SYBENCH_END"] = load.end or ""
    return parse_wrk(_run(argv, seconds + load.timeout + 10, env))


def _loadgen(args: list[str], limit: float) -> Result:
    d = orjson.loads(_run([sys.executable, "-m", "bench.loadgen", *args], limit).strip().splitlines()[-1])
    return Result(
        requests=d["requests"],
        seconds=d["duration_s"],
        p50_ms=d["p50_ms"],
        p99_ms=d["p99_ms"],
        errors=d["errors"],
        ttfb_p50_ms=d["ttfb_p50_ms"],
        ttfb_p99_ms=d["ttfb_p99_ms"],
        max_open=d["max_open"],
        error_kinds=", ".join(f"{k} {v}" for k, v in d["error_kinds"].items()),
    )


def _common(load: Load) -> list[str]:
    args = ["--url", load.url, "--body", str(load.body), "--timeout", str(load.timeout)]
    for k, v in load.headers:
        args += ["--header", f"{k}: {v}"]
    return args + (["--end", load.end] if load.end else [])


def python_loop(load: Load, max_requests: int = 1_000_000) -> Result:
    args = ["loop", *_common(load), "--concurrency", str(load.clients), "--duration", str(load.duration)]
    args += ["--stagger-ms", str(load.stagger_ms)]
    return _loadgen([*args, "--max-requests", str(max_requests)], load.duration + load.timeout + 10)


def python_burst(load: Load, ramp: float) -> Result:
    args = ["burst", *_common(load), "--streams", str(load.clients), "--ramp", str(ramp)]
    return _loadgen(args, ramp + load.timeout + 10)
