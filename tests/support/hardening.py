"""Helpers for the hardening tests (issue 19): the gateway as a real process under a memory cap,
the gateway in a thread with its production HTTP protocol, and raw sockets."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
import yaml

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.wire.http import GatewayHTTPProtocol
from tests.support.servers import ServerThread, free_port

# The cap for a gateway process that a regression could blow up: a healthy worker stays far below.
MEMORY_CAP = 1536 * 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


class Served:
    """``switchyard serve`` in a subprocess (under ``prlimit --as``), on a free loopback port."""

    def __init__(
        self,
        config: dict[str, Any] | None,
        tmp: Path,
        workers: int = 1,
        memory: int | None = MEMORY_CAP,
        pythonpath: str | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"serve-{self.port}.log"
        self.config_path = tmp / f"config-{self.port}.yaml"
        cmd = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--workers", str(workers)]
        if config is not None:
            self.config_path.write_text(yaml.safe_dump(config))
            cmd += ["--config", str(self.config_path)]
        if memory is not None:
            cmd = ["prlimit", f"--as={memory}", *cmd]
        env = {k: v for k, v in os.environ.items() if k not in ("SWITCHYARD_CONFIG", "PROMETHEUS_MULTIPROC_DIR")}
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = pythonpath or str(ROOT)
        self.p = subprocess.Popen(
            cmd, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=pythonpath or str(ROOT)
        )
        deadline = time.monotonic() + 60  # a loaded machine starts workers slowly
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                break
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("gateway did not start: " + self.log.read_text())

    def alive(self) -> bool:
        return self.p.poll() is None

    def worker_pids(self) -> list[int]:
        """The serving processes: the worker itself, or the supervisor's children."""
        out = subprocess.run(["pgrep", "-P", str(self.p.pid)], capture_output=True, text=True).stdout.split()
        kids = [int(x) for x in out]
        # prlimit execs the command, so p.pid is the gateway (or its supervisor).
        return [k for k in kids if "spawn_main" in _cmdline(k)] or [self.p.pid]

    def cpu_seconds(self) -> float:
        return sum(_cpu(pid) for pid in [self.p.pid, *self.worker_pids()])

    def rss(self) -> int:
        return max(_rss(pid) for pid in [self.p.pid, *self.worker_pids()])

    def stop(self) -> None:
        """SIGTERM (the supervisor stops its workers), then SIGKILL for whatever is left: no orphans."""
        if self.p.poll() is None:
            workers = self.worker_pids()
            self.p.terminate()
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
            for pid in workers:
                if pid != self.p.pid:
                    try:
                        os.kill(pid, 9)
                    except ProcessLookupError:
                        pass

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class GatewayThread(ServerThread):
    """The gateway in a thread under uvicorn with the production HTTP protocol (cli.py's)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(Gateway(parse_config(cfg, env={})))
        self.config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            loop="uvloop",
            http=GatewayHTTPProtocol,
            lifespan="on",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)


def raw_request(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return read_all(s)


def read_all(s: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := s.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    return b"".join(chunks)


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


class Hammer:
    """Cheap HTTP/1.1 clients on raw asyncio sockets, in a thread: many requests per second, each
    checked (a reset, or a connection closed before the answer, is an error). ``keep_alive``: reuse
    a connection until the server says ``connection: close`` (checking for its end before reuse, as
    pooled clients do); otherwise a new connection per request."""

    REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"

    def __init__(
        self, port: int, connections: int, keep_alive: bool, request: bytes | None = None, think: float = 0.0
    ) -> None:
        self.request = request or self.REQUEST
        self.think = think  # up to this many seconds between requests: connections idle, as in a pool
        self.port = port
        self.connections = connections
        self.keep_alive = keep_alive
        self.ok = 0
        self.connects = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _main(self) -> None:
        await asyncio.gather(*(self._client() for _ in range(self.connections)))

    async def _client(self) -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        rng = random.Random()
        while not self._stop.is_set():
            try:
                if self.think:
                    await asyncio.sleep(rng.uniform(0, self.think))
                if conn is not None:
                    await asyncio.sleep(0)  # let a pending end of the connection arrive
                    if conn[0].at_eof():
                        conn[1].close()
                        conn = None
                if conn is None:
                    conn = await asyncio.open_connection("127.0.0.1", self.port)
                    self.connects += 1
                reader, writer = conn
                writer.write(self.request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                close = not self.keep_alive
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                    elif name.lower() == b"connection" and value.strip().lower() == b"close":
                        close = True
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    self.errors.append(head.split(b"\r\n", 1)[0].decode())
                self.ok += 1
                if close:
                    writer.close()
                    conn = None
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
                self.errors.append(repr(e))
                if conn is not None:
                    conn[1].close()
                conn = None
        if conn is not None:
            conn[1].close()


Reply = tuple[int, list[tuple[bytes, bytes]], Any]  # status, headers, bytes or an async iterator of bytes


class ScriptedUpstream:
    """An upstream whose answer per request is scripted by the test: ``script[model](body, path)``
    returns a ``Reply``; requests are kept in ``seen``."""

    def __init__(self) -> None:
        self.script: dict[str, Any] = {}
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                await send({"type": msg["type"] + ".complete"})
                if msg["type"] == "lifespan.shutdown":
                    return
        raw = b""
        while True:
            msg = await receive()
            raw += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = {}
        model = body.get("model", "") if isinstance(body, dict) else ""
        self.seen.append((scope["path"], body))
        handler = self.script.get(model) or self.script.get(scope["path"]) or self.script.get("*")
        status, headers, content = handler(body, scope["path"])
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if isinstance(content, bytes):
            await send({"type": "http.response.body", "body": content})
            return
        try:
            async for piece in content:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        except (asyncio.CancelledError, OSError):
            return
        await send({"type": "http.response.body", "body": b""})


def json_reply(status: int, obj: Any, *headers: tuple[bytes, bytes]) -> Reply:
    return status, [(b"content-type", b"application/json"), *headers], orjson.dumps(obj)


def chat_answer(content: str = "ok", usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-s",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": usage or {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
