"""``python -m bench.instructions``: instructions per request (valgrind's callgrind) of one target in one scenario.

CPU seconds move by 20-40 % between minutes on shared machines; instruction counts do not (the same
code, inputs and load give the same count within about 1 %, whatever else the machine runs), so a
before/after comparison of a change on the hot path reads best here. The target runs under
callgrind with instrumentation off; after a warm-up it is switched on for ``--requests`` requests
sent by ``--clients`` concurrent clients, then the count is dumped and divided. Under callgrind the
target runs about 50 times slower, so reads batch more than at full speed: compare counts with
counts, not with the bench's seconds.

    python -m bench.instructions gateway chat-32
    python -m bench.instructions bare-switchyard stream-32 --requests 320
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench.procs import free_port, stop, wait_port
from bench.run import VENDORS
from bench.scenarios import ANTHROPIC_VENDORS, BY_NAME, GATEWAY, Request, request

ROOT = Path(__file__).resolve().parent.parent
TARGETS = (GATEWAY, "bare-aiohttp", "bare-switchyard")
KEY = "sk-bench-instructions"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n")[0])
    ap.add_argument("target", choices=TARGETS)
    ap.add_argument("scenario", choices=sorted(n for n, s in BY_NAME.items() if s.load == "rate"))
    ap.add_argument("--requests", type=int, default=640, help="measured requests (rounded down to whole rounds)")
    ap.add_argument("--clients", type=int, default=32, help="concurrent clients")
    ap.add_argument("--warmup", type=int, default=128, help="requests before counting starts")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="the gateway's usage store")
    return ap.parse_args(argv)


async def _load(port: int, req: Request, n: int, clients: int) -> None:
    """``n`` requests (whole rounds of ``clients``), each answered 200, over kept-alive connections."""
    import aiohttp

    headers = dict(req.headers) | {"content-type": "application/json"}
    url = f"http://127.0.0.1:{port}{req.path}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:

        async def client(k: int) -> None:
            for _ in range(k):
                async with session.post(url, data=req.body, headers=headers, timeout=aiohttp.ClientTimeout(120)) as r:
                    body = await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{r.status}: {body[:300]!r}")

        await asyncio.gather(*(client(n // clients) for _ in range(clients)))


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, stdout=subprocess.DEVNULL)


def measure(args: argparse.Namespace, out: Path) -> float:
    ports = {v: free_port() for v in VENDORS}
    spec = [
        a
        for v, p in ports.items()
        for a in ("--serve", f"{v}:{p}" + (":dialect=anthropic" if v in ANTHROPIC_VENDORS else ""))
    ]
    upstream = subprocess.Popen([sys.executable, "-m", "bench.upstream", *spec], cwd=ROOT)
    procs = [upstream]
    try:
        for p in ports.values():
            wait_port(p, upstream)
        urls = {v: f"http://127.0.0.1:{p}/v1" for v, p in ports.items()}
        port = free_port()
        env = dict(os.environ)
        if args.target == GATEWAY:
            env.update(
                SYBENCH_CLIENT_KEY=KEY,
                SYBENCH_FAST_URL=urls["fast"],
                SYBENCH_SLOW_URL=urls["slow"],
                SYBENCH_TRICKLE_URL=urls["trickle"],
                SYBENCH_ANTHROPIC_URL=urls["anthropic"].removesuffix("/v1"),
                SYBENCH_REDIS_URL=args.redis_url,
                SYBENCH_REDIS_PREFIX=f"sybench-ir:{uuid.uuid4().hex[:8]}:",
            )
            config = str(ROOT / "bench" / "config.yaml")
            argv = [sys.executable, "-m", "gateway", "serve", "--config", config, "--host", "127.0.0.1"]
            argv += ["--port", str(port), "--workers", "1"]
        else:
            argv = [sys.executable, "-m", "bench.bare_proxy", "--client", args.target.removeprefix("bare-")]
            argv += ["--port", str(port), *(a for v, u in urls.items() for a in ("--upstream", f"{v}={u}"))]
            argv += [a for v in ANTHROPIC_VENDORS for a in ("--anthropic", v)]
        grind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}/cg.%p"]
        target = subprocess.Popen([*grind, *argv], cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
        procs.append(target)
        wait_port(port, target, timeout=300)  # start-up under callgrind takes a while
        req = request(BY_NAME[args.scenario], args.target, KEY)
        asyncio.run(_load(port, req, max(args.warmup, args.clients), args.clients))
        _control(target.pid, "--zero")
        _control(target.pid, "--instr=on")
        n = args.requests // args.clients * args.clients
        asyncio.run(_load(port, req, n, args.clients))
        _control(target.pid, "--dump")
        _control(target.pid, "--instr=off")
    finally:
        for p in reversed(procs):
            stop(p, grace=30)
    dumps = sorted(out.glob("cg.*.1"))  # the first dump after start: the measured requests only
    total = next(int(line.split()[1]) for line in dumps[0].read_text().splitlines() if line.startswith("totals:"))
    return total / n


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sybench-ir-") as tmp:
        per_request = measure(args, Path(tmp))
    print(f"{args.target} {args.scenario}: {per_request:,.0f} instructions per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
