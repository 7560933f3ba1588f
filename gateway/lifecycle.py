"""Process lifecycle: drain on SIGTERM, reload on SIGHUP, exit 0 after a graceful stop.

SIGTERM: ``/readyz`` answers 503 at once; the worker keeps serving for ``server.drain_delay``
seconds (so load balancers that probe readiness see it go unready), then uvicorn stops
accepting and waits up to ``server.shutdown_grace`` for in-flight requests and streams, then
the lifespan shutdown flushes usage.

Reload: with several workers uvicorn's supervisor handles SIGHUP itself by starting fresh
workers (which read the config file anew) and retiring the old ones only once the new ones
are ready, so a bad file leaves the running workers in place. A single worker has no
supervisor, so it reloads in-process: the new config is validated and built first, then
swapped in one assignment; requests in flight keep the State they started with.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("switchyard")

SUPERVISED_ENV = "SWITCHYARD_SUPERVISED"  # set by `serve` when uvicorn runs several workers


def exit_zero_on_sigterm() -> None:
    """After uvicorn's graceful stop it re-raises SIGTERM with the handler found before it:
    make that handler a clean exit 0 (a drained shutdown is a success, not a kill)."""
    signal.signal(signal.SIGTERM, lambda _s, _f: sys.exit(0))


def install(gateway: Any, loop: asyncio.AbstractEventLoop, drain_delay: float, reload: Callable[[], Any]) -> None:
    """Wrap uvicorn's SIGTERM handler and add SIGHUP reload (main thread of a worker only)."""
    if threading.current_thread() is not threading.main_thread():
        return  # tests run the app in a thread; signals belong to the main thread
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(sig: int, frame: FrameType | None) -> None:
        if gateway.draining or not callable(previous):
            if callable(previous):
                previous(sig, frame)  # a second SIGTERM: stop draining politely, exit now
            return
        gateway.draining = True
        log.info("SIGTERM: unready now, draining in-flight requests")
        loop.call_soon_threadsafe(loop.call_later, drain_delay, previous, sig, frame)

    signal.signal(signal.SIGTERM, on_term)
    if not supervised():
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload()))


def supervised() -> bool:
    return os.environ.get(SUPERVISED_ENV) == "1"


def request_supervisor_reload() -> None:
    """Ask uvicorn's supervisor (our parent) for a rolling restart of all workers."""
    os.kill(os.getppid(), signal.SIGHUP)
