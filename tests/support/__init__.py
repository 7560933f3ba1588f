"""What the tests run against but do not test: loopback servers, Redis, an independent files API, parsers."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # the repository


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond: Any, timeout: float = 10.0, step: float = 0.02) -> bool:
    """Poll ``cond`` (bounded); True once it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())
