"""The bench's simulated upstreams: several ``MockUpstream``s (OpenAI or Anthropic dialect) in one uvicorn process.

One process serves every upstream the scenarios need, each on its own port, told apart by the
port the request arrived on. Recording is off (it would cost the upstream CPU for nothing),
and the listen backlog is large so thousands of streams can connect at once.

    python -m bench.upstream --serve fast:PORT:chunks=20 --serve slow:PORT:latency_ms=500 \
        --serve anthropic:PORT:dialect=anthropic,chunks=20
"""

from __future__ import annotations

import argparse
import socket
from typing import Any

import uvicorn

from gateway.wire.asgi import Receive, Scope, Send
from simulators.server import MockUpstream

BACKLOG = 16384


class ByPort:
    """Dispatch each connection to the upstream listening on the port it arrived on."""

    def __init__(self, apps: dict[int, MockUpstream]) -> None:
        self.apps = apps
        self.first = next(iter(apps.values()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self.first(scope, receive, send)
        server = scope.get("server")
        await self.apps[server[1] if server else 0](scope, receive, send)


def parse_spec(spec: str) -> tuple[str, int, dict[str, Any]]:
    """``name:port[:key=value,...]`` -> (name, port, MockUpstream keyword arguments)."""
    name, port, *rest = spec.split(":")
    kwargs: dict[str, Any] = {}
    for item in ",".join(rest).split(","):
        if item:
            k, v = item.split("=", 1)
            kwargs[k] = v if k == "dialect" else int(v) if k == "chunks" else float(v)
    return name, int(port), kwargs


def listen(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(BACKLOG)
    return s


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Simulated upstreams for the benchmark.")
    ap.add_argument(
        "--serve",
        action="append",
        required=True,
        help="name:port[:dialect=openai|anthropic,chunks=N,latency_ms=N,chunk_delay_ms=N]",
    )
    args = ap.parse_args(argv)
    apps: dict[int, MockUpstream] = {}
    for spec in args.serve:
        _, port, kwargs = parse_spec(spec)
        apps[port] = MockUpstream(kwargs.pop("dialect", "openai"), record=False, **kwargs)
    sockets = [listen(p) for p in apps]
    config = uvicorn.Config(
        ByPort(apps),
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=BACKLOG,  # uvicorn listens again on the sockets it is given, with this backlog
        # Idle connections kept as providers keep them (a minute or more). uvicorn's 5 s default closes
        # them under the clients' pools (aiohttp keeps its own 15 s), and a POST caught on a connection
        # as it closes fails in the bare aiohttp proxy, which does not send it again: rows with errors.
        timeout_keep_alive=120,
    )
    uvicorn.Server(config).run(sockets=sockets)


if __name__ == "__main__":
    main()
