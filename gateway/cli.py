"""``switchyard``: serve, check-config, hash-key, mock-upstream, keys (README "Command line")."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from gateway import lifecycle
from gateway.config import DEMO_KEY, Config, ConfigError, load_config, summary

WORKER_HEALTHCHECK = 60  # seconds (uvicorn's default of 5 aborted reloads on a busy machine)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.accounting.metrics import prepare_multiprocess_dir
    from gateway.app import DEMO_ANNOUNCED_ENV, load_or_default
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


ADMIN_KEY_ENV = "SWITCHYARD_ADMIN_KEY"
DEFAULT_URL = "http://127.0.0.1:8080"


class _ApiError(Exception):
    pass


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One admin API call; the answer's JSON, or _ApiError with the gateway's message."""
    key = os.environ.get(ADMIN_KEY_ENV, "")
    if not key:
        raise _ApiError(f"set {ADMIN_KEY_ENV} to an admin key")
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(args.url.rstrip("/") + path, data=data, method=method)
    req.add_header("authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            msg = json.loads(e.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            msg = e.reason
        raise _ApiError(f"{e.code}: {msg}") from None
    except (urllib.error.URLError, OSError) as e:
        raise _ApiError(f"cannot reach {args.url}: {getattr(e, 'reason', e)}") from None


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def _keys_create(args: argparse.Namespace) -> Any:
    body: dict[str, Any] = {"name": args.name}
    if args.model:
        body["models"] = args.model
    limits = {k: v for k, v in (("rpm", args.rpm), ("tpm", args.tpm), ("tokens_per_day", args.tokens_per_day)) if v}
    if limits:
        body["limits"] = limits
    if args.team:
        body["team"] = args.team
    if args.expires_at:
        body["expires_at"] = int(args.expires_at) if args.expires_at.isdigit() else args.expires_at
    if args.metadata:
        pairs = [m.partition("=") for m in args.metadata]
        if any(not sep for _, sep, _ in pairs):
            raise _ApiError("--metadata takes KEY=VALUE")
        body["metadata"] = {k: v for k, _, v in pairs}
    if args.files_provider:
        body["files_provider"] = args.files_provider
    out = _call(args, "POST", "/admin/keys", body)
    if args.json:
        _print_json(out)
    else:
        print(out["key"])
        print(f"created key '{out['name']}': store it now, it is not shown again", file=sys.stderr)


def _keys_list(args: argparse.Namespace) -> Any:
    path = "/admin/keys" + (f"?team={urllib.parse.quote(args.team)}" if args.team else "")
    out = _call(args, "GET", path)
    if args.json:
        _print_json(out)
        return
    rows = [("NAME", "SOURCE", "STATUS", "TEAM", "EXPIRES", "MODELS")]
    for k in out["data"]:
        models = ",".join(k["models"])
        rows.append((k["name"], k["source"], k["status"], k["team"] or "-", k["expires_at"] or "-", models))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])


def _keys_revoke(args: argparse.Namespace) -> Any:
    _call(args, "DELETE", f"/admin/keys/{urllib.parse.quote(args.name, safe='')}")
    print(f"revoked key '{args.name}'", file=sys.stderr)


def _keys_rotate(args: argparse.Namespace) -> Any:
    path = f"/admin/keys/{urllib.parse.quote(args.name, safe='')}/rotate"
    out = _call(args, "POST", path, {"grace_seconds": args.grace_seconds})
    if args.json:
        _print_json(out)
    else:
        print(out["key"])
        until = out.get("previous_key_expires_at")
        note = f"the old key works until {until}" if until else "the old key no longer works"
        print(f"rotated key '{args.name}': store the new key now; {note}", file=sys.stderr)


def _keys(args: argparse.Namespace) -> int:
    try:
        args.action(args)
    except _ApiError as e:
        print(f"switchyard keys {args.keys_command}: {e}", file=sys.stderr)
        return 1
    return 0


def _keys_parser(sub: Any) -> None:
    k = sub.add_parser(
        "keys",
        help="create, list, revoke and rotate runtime keys through a running gateway",
        description=f"Runtime keys through the admin API; the admin key is read from ${ADMIN_KEY_ENV}.",
    )
    k.add_argument("--url", default=os.environ.get("SWITCHYARD_URL", DEFAULT_URL), help=f"default {DEFAULT_URL}")
    k.add_argument("--timeout", type=float, default=10.0, help="seconds")
    ks = k.add_subparsers(dest="keys_command", required=True)

    c = ks.add_parser("create", help="create a key; prints it (shown only this once)")
    c.add_argument("name")
    c.add_argument("--model", action="append", help="a model glob the key may use (repeatable; default all)")
    c.add_argument("--team")
    c.add_argument("--rpm", type=int)
    c.add_argument("--tpm", type=int)
    c.add_argument("--tokens-per-day", type=int)
    c.add_argument("--expires-at", help="RFC 3339 (2027-06-30T00:00:00Z) or unix seconds")
    c.add_argument("--metadata", action="append", metavar="KEY=VALUE")
    c.add_argument("--files-provider")
    c.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    c.set_defaults(action=_keys_create)

    ls = ks.add_parser("list", help="list config and runtime keys (never a key itself)")
    ls.add_argument("--team")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(action=_keys_list)

    r = ks.add_parser("revoke", help="revoke a runtime key at once")
    r.add_argument("name")
    r.set_defaults(action=_keys_revoke)

    ro = ks.add_parser("rotate", help="give a key a new secret; prints it")
    ro.add_argument("name")
    ro.add_argument("--grace-seconds", type=int, default=0, help="how long the old key keeps working (default 0)")
    ro.add_argument("--json", action="store_true")
    ro.set_defaults(action=_keys_rotate)
    k.set_defaults(func=_keys)


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

    _keys_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
