"""``switchyard``: serve, check-config, hash-key, mock-upstream (DESIGN §1)."""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys

from gateway import lifecycle
from gateway.config import ConfigError, load_config, summary

WORKER_HEALTHCHECK = 60  # seconds (uvicorn's default of 5 aborted reloads on a busy machine)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.accounting.metrics import prepare_multiprocess_dir
    from gateway.app import load_or_default
    from gateway.wire.http import GatewayHTTPProtocol

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
    if is_default:
        os.environ.pop("SWITCHYARD_CONFIG", None)  # the factory then logs the demo warning
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
            http=GatewayHTTPProtocol,  # httptools with bounded heads, read deadlines, JSON errors
            lifespan="on",
            access_log=False,
            proxy_headers=False,  # client addresses are not used; skip the middleware
            backlog=4096,  # bursts of thousands of new streams must not overflow the accept queue
            log_level="warning",
            timeout_graceful_shutdown=int(cfg.server.shutdown_grace),
            # How long a rolling reload waits for each new worker to be ready (and a worker may take to
            # answer the supervisor's ping) before giving up: a loaded machine imports slowly.
            timeout_worker_healthcheck=WORKER_HEALTHCHECK,
        )
    finally:
        cleanup_metrics()
    return 0


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
