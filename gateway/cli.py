"""``switchyard``: serve, check-config, hash-key, mock-upstream (README "Command line")."""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import socket
import sys

from gateway import lifecycle
from gateway.config import DEMO_KEY, Config, ConfigError, load_config, summary


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.accounting.metrics import prepare_multiprocess_dir
    from gateway.app import DEMO_ANNOUNCED_ENV, load_or_default

    path = args.config or os.environ.get("SWITCHYARD_CONFIG")
    try:
        cfg, is_default = load_or_default(path)
    except ConfigError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return 2
    if path:
        # Workers re-read it through the factory.
        os.environ["SWITCHYARD_CONFIG"] = os.path.abspath(path)
    host = args.host or cfg.server.host
    port = args.port if args.port is not None else cfg.server.port
    workers = args.workers or int(os.environ.get("SWITCHYARD_WORKERS", 0) or 0) or cfg.server.workers
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    problem = _cannot_bind(host, port)
    if problem:
        print(f"switchyard: cannot listen on {_origin(host, port)}: {problem}", file=sys.stderr)
        return 1
    if is_default:
        os.environ.pop("SWITCHYARD_CONFIG", None)
        os.environ[DEMO_ANNOUNCED_ENV] = "1"  # this line says it all; the factory need not warn again
    print(listening_line(cfg, None if is_default else os.path.abspath(path or ""), host, port, workers), flush=True)
    # Before the workers start: they pick the metrics directory up from the environment.
    cleanup_metrics = prepare_multiprocess_dir(workers)
    lifecycle.exit_zero_on_sigterm()
    os.environ[lifecycle.SUPERVISED_ENV] = "1" if workers > 1 else "0"
    try:
        uvicorn.run(
            "gateway.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            proxy_headers=False,  # client addresses are not used; skip the middleware
            backlog=4096,  # bursts of thousands of new streams must not overflow the accept queue
            log_level="warning",
            timeout_graceful_shutdown=int(cfg.server.shutdown_grace),
        )
    finally:
        cleanup_metrics()
    return 0


def listening_line(cfg: Config, path: str | None, host: str, port: int, workers: int) -> str:
    """The one line ``serve`` prints: where it listens, and with which key."""
    base = f"{_origin(host, port)}/v1"
    if path is None:
        return (
            f"switchyard: listening on {base} with the demo key {DEMO_KEY} (no config given: built-in mock "
            f"provider, models mock/echo, echo and mock/embed, in-process usage; not for production)"
        )
    keys = f"{len(cfg.keys)} key{'s' if len(cfg.keys) != 1 else ''} from {path}"
    return f"switchyard: listening on {base} with {keys} ({workers} worker{'s' if workers != 1 else ''})"


def _origin(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _cannot_bind(host: str, port: int) -> str | None:
    """Why (host, port) cannot be listened on, checked before announcing it; None when it can."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, addr = infos[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            s.bind(addr)
    except OSError as e:
        return e.strerror or str(e)
    return None


def _check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.path)
    except ConfigError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return 2
    print(summary(cfg))
    return 0


def _hash_key(args: argparse.Namespace) -> int:
    key = args.key
    if key == "-":
        key = sys.stdin.readline().rstrip("\n")
    if not key:
        print("hash-key: the key must not be empty", file=sys.stderr)
        return 2
    print(hashlib.sha256(key.encode()).hexdigest())
    return 0


def _mock_upstream(args: argparse.Namespace) -> int:
    from simulators.server import serve_mock

    serve_mock(args.dialect, args.host, args.port, args.latency_ms, args.chunks, args.chunk_delay_ms)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="switchyard", description="Switchyard: an OpenAI-compatible LLM gateway.")
    sub = ap.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--config", help="config file (default: $SWITCHYARD_CONFIG, else the built-in demo)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int)
    s.set_defaults(func=_serve)

    c = sub.add_parser("check-config", help="validate a config file")
    c.add_argument("path")
    c.set_defaults(func=_check_config)

    h = sub.add_parser("hash-key", help="print the sha256 digest of a client key ('-' reads stdin)")
    h.add_argument("key")
    h.set_defaults(func=_hash_key)

    m = sub.add_parser("mock-upstream", help="run a simulated upstream")
    m.add_argument("--dialect", default="openai", choices=["openai", "anthropic", "gemini", "cohere"])
    m.add_argument("--host", default="127.0.0.1")
    m.add_argument("--port", type=int, default=9000)
    m.add_argument("--latency-ms", type=float, default=0.0)
    m.add_argument("--chunks", type=int, default=None, help="content chunks per streamed answer")
    m.add_argument("--chunk-delay-ms", type=float, default=0.0, help="pause before each streamed chunk")
    m.set_defaults(func=_mock_upstream)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
