"""Real servers on loopback ports for integration tests: uvicorn in a background thread."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from tests.support import free_port

__all__ = ["ServerThread", "free_port"]


class ServerThread:
    """Runs an ASGI app under uvicorn (uvloop, httptools) on 127.0.0.1:<free port>."""

    def __init__(self, app: Any, port: int | None = None, lifespan: str = "on") -> None:
        self.app = app
        self.port = port or free_port()
        self.config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            loop="uvloop",
            http="httptools",
            lifespan=lifespan,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
