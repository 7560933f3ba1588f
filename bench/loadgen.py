"""A Python load generator, run in its own process; prints one JSON line.

It does what wrk can't: time to first byte of streams (``loop``, on aiohttp), and thousands of
concurrent slow streams (``burst``, on bare asyncio sockets so 5,000 of them cost little CPU),
each stream checked to reach its proper end (``--end``: ``[DONE]``, or the type of its last event,
``response.completed`` or ``message_stop``). ``loop`` is also the fallback when wrk is not
installed, and then it competes with the gateway for CPU (the table says so). Every loop is
bounded by a request count and a deadline.

    python -m bench.loadgen loop --url U --body FILE --header "authorization: Bearer K" --end "[DONE]" \
        --concurrency 1 --duration 2 --max-requests 2000
    python -m bench.loadgen burst --url U --body FILE --header "authorization: Bearer K" --end "[DONE]" \
        --streams 5000 --ramp 1 --timeout 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

TAIL = 8192  # bytes of a raw stream kept to find its last event (a final response.completed is ~2 KB)


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    ttfbs: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    open_now: int = 0
    max_open: int = 0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


def stream_ended(data: bytes, end: str) -> bool:
    """Whether an SSE body's last event is its proper end: ``data: [DONE]``, or an event naming ``end``."""
    text = data.rstrip()
    if end == "[DONE]":
        return text.endswith(b"data: [DONE]")
    # A [DONE] after the terminal event (LiteLLM sends one on /v1/responses) is tolerated: the SDKs stop at it.
    text = text.removesuffix(b"data: [DONE]").rstrip()
    at = max(text.rfind(b"\n\n"), text.rfind(b"\n\r\n"))
    return end.encode() in text[at + 1 :]


async def one(session: aiohttp.ClientSession, url: str, body: bytes, end: str | None, tally: Tally) -> None:
    """One request: latency to the end, time to the first body byte, and a check of the answer."""
    t0 = time.perf_counter()
    tally.open_now += 1
    tally.max_open = max(tally.max_open, tally.open_now)
    try:
        async with session.post(url, data=body) as resp:
            first = await resp.content.readany()
            ttfb = time.perf_counter() - t0
            chunks = [first]
            while chunk := await resp.content.readany():
                if end:
                    chunks.append(chunk)
            if resp.status != 200:
                return tally.error(verdict(b"HTTP/1.1 %d " % resp.status + first, b"") or "")
            if end and not stream_ended(b"".join(chunks), end):
                return tally.error(f"stream ended without {end}")
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        return tally.error(type(e).__name__)
    finally:
        tally.open_now -= 1
    tally.ttfbs.append(ttfb)
    tally.latencies.append(time.perf_counter() - t0)


async def loop(session: aiohttp.ClientSession, args: argparse.Namespace, body: bytes) -> Tally:
    """Closed loop: ``concurrency`` clients, each sending again when answered, until time or count runs out."""
    tally = Tally()
    deadline = time.perf_counter() + args.duration
    budget = [args.max_requests]

    async def client() -> None:
        if args.stagger_ms:
            await asyncio.sleep(random.uniform(0, args.stagger_ms / 1000))
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            await one(session, args.url, body, args.end, tally)

    await asyncio.gather(*(client() for _ in range(args.concurrency)))
    return tally


class _Probe(asyncio.Protocol):
    """One streamed request on its own connection (``Connection: close``), read to EOF at minimal CPU cost."""

    def __init__(self, request: bytes, done: asyncio.Future[None]) -> None:
        self.request = request
        self.done = done
        self.head = b""  # the first bytes: status line (and an error body's code, if any)
        self.tail = b""
        self.first: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        if len(self.head) < 1024:
            self.head += data[: 1024 - len(self.head)]
        self.tail = (self.tail + data)[-TAIL:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def verdict(head: bytes, tail: bytes, end: str = "[DONE]") -> str | None:
    """None for a complete 200 stream (raw HTTP, chunked); else what went wrong (status and error code)."""
    status = head[9:12].decode("latin-1", "replace")
    if status != "200":
        code = re.search(rb'"code"\s*:\s*"([^"]+)"', head)
        return f"HTTP {status}" + (f" {code.group(1).decode()}" if code else "")
    # The chunked-encoding terminator, and before it the stream's own end: the stream ended properly.
    if not tail.endswith(b"0\r\n\r\n") or not stream_ended(tail[:-5], end):
        return f"stream ended without {end}"
    return None


async def one_stream(url: str, body: bytes, headers: list[str], end: str, tally: Tally) -> None:
    u = urlsplit(url)
    extra = "".join(f"{h}\r\n" for h in headers)
    request = (
        f"POST {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\n{extra}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    probe = _Probe(request, done)
    t0 = time.perf_counter()
    tally.open_now += 1
    tally.max_open = max(tally.max_open, tally.open_now)
    transport = None
    try:
        transport, _ = await loop.create_connection(lambda: probe, u.hostname, u.port)
        await done
    except OSError as e:
        return tally.error(type(e).__name__)
    finally:
        tally.open_now -= 1
        if transport is not None:
            transport.close()
    problem = verdict(probe.head, probe.tail, end)
    if problem:
        return tally.error(problem)
    tally.ttfbs.append((probe.first or t0) - t0)
    tally.latencies.append(time.perf_counter() - t0)


async def burst(args: argparse.Namespace, body: bytes) -> Tally:
    """``streams`` requests started evenly over ``ramp`` seconds, all awaited (bounded by ``timeout``)."""
    tally = Tally()
    tasks = []
    step = args.ramp / max(args.streams, 1)
    start = time.perf_counter()
    for i in range(args.streams):
        # Spread connects so the listen backlog never overflows (a dropped SYN costs a 1 s retry).
        delay = start + i * step - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one_stream(args.url, body, args.header, args.end or "[DONE]", tally)))
    _, pending = await asyncio.wait(tasks, timeout=args.timeout)
    for t in pending:
        t.cancel()
        tally.error("unfinished at timeout")
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*pending, return_exceptions=True)
    return tally


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def summary(tally: Tally, elapsed: float) -> dict[str, Any]:
    ms = 1000.0
    p = {q: percentile(tally.latencies, q / 100) for q in (50, 99)}
    t = {q: percentile(tally.ttfbs, q / 100) for q in (50, 99)}
    return {
        "requests": len(tally.latencies),
        "errors": sum(tally.errors.values()),
        "error_kinds": tally.errors,
        "duration_s": elapsed,
        "p50_ms": p[50] and p[50] * ms,
        "p99_ms": p[99] and p[99] * ms,
        "ttfb_p50_ms": t[50] and t[50] * ms,
        "ttfb_p99_ms": t[99] and t[99] * ms,
        "max_open": tally.max_open,
    }


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    with open(args.body, "rb") as f:
        body = f.read()
    start = time.perf_counter()
    if args.mode == "burst":
        return summary(await burst(args, body), time.perf_counter() - start)
    headers = {"content-type": "application/json"}
    headers.update(h.split(": ", 1) for h in args.header)  # type: ignore[misc]
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:
        return summary(await loop(session, args, body), time.perf_counter() - start)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Bounded Python load generator for the Switchyard bench.")
    ap.add_argument("mode", choices=["loop", "burst"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--body", required=True, help="file holding the JSON request body")
    ap.add_argument("--header", action="append", default=[], help='"Name: value" (the key among them)')
    ap.add_argument("--end", help="a stream's proper end: [DONE] or its last event's type; omitted: not a stream")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--duration", type=float, default=2.0, help="loop: seconds to keep sending")
    ap.add_argument("--max-requests", type=int, default=100_000, help="loop: stop after this many")
    ap.add_argument("--stagger-ms", type=float, default=0, help="loop: random delay before each client's first request")
    ap.add_argument("--streams", type=int, default=100, help="burst: how many requests")
    ap.add_argument("--ramp", type=float, default=1.0, help="burst: seconds over which they start")
    ap.add_argument("--timeout", type=float, default=30.0, help="longest wait for any one request")
    args = ap.parse_args(argv)
    raise_fd_limit()
    import uvloop

    result = uvloop.run(amain(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
