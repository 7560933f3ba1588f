"""Processes for the bench: start, wait for, stop, and read a process tree's CPU and memory from /proc."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """In a child before exec: SIGTERM it if the runner dies (even by SIGKILL), so no server is left behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (uvicorn workers, if any)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(_stat_fields(int(entry))[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of the tree, plus what its reaped children used (cutime + cstime)."""
    ticks = 0
    for p in tree(pid):
        try:
            f = _stat_fields(p)
        except OSError:
            continue
        # After the name: state=0, ppid=1, ... utime=11, stime=12, cutime=13, cstime=14.
        ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds every CPU of the machine spent busy (not idle or waiting for I/O) since boot."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_mb(pid: int) -> float:
    """Resident memory of the tree now."""
    return sum(_status_kb(p, "VmRSS") for p in tree(pid)) / 1024


def reset_peak(pid: int) -> bool:
    """Reset each process's peak RSS (VmHWM) so the next reading covers one scenario only."""
    ok = True
    for p in tree(pid):
        try:
            Path(f"/proc/{p}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def peak_rss_mb(pid: int) -> float:
    """Sum of each process's peak RSS since the last ``reset_peak``."""
    return sum(_status_kb(p, "VmHWM") for p in tree(pid)) / 1024


@dataclass
class Others:
    """How busy the machine was with processes outside the bench (other users, a shared Redis)."""

    busy: float
    ours: float
    wall: float

    @classmethod
    def now(cls) -> Others:
        # Our tree includes the load generators we waited for (their CPU lands in our cutime).
        return cls(machine_busy_seconds(), cpu_seconds(os.getpid()), time.monotonic())

    def cpus_since(self, before: Others) -> float:
        wall = self.wall - before.wall
        return max(0.0, (self.busy - before.busy) - (self.ours - before.ours)) / wall if wall > 0 else 0.0


def wait_idle(pid: int, limit: float = 15.0, step: float = 0.2, busy: float = 0.1) -> float:
    """Until the tree uses less than ``busy`` of a CPU over ``step`` seconds (work a warm-up left queued is done),
    at most ``limit`` seconds; returns the seconds waited."""
    start = time.monotonic()
    before = cpu_seconds(pid)
    while time.monotonic() - start < limit:
        time.sleep(step)
        now = cpu_seconds(pid)
        if now - before < busy * step:
            break
        before = now
    return time.monotonic() - start


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Until something accepts on 127.0.0.1:port; fail fast if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; only the process we started."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)
