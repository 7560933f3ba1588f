"""The gateway as a real process: SIGTERM drains live streams and exits 0; SIGHUP and
POST /admin/reload swap the config (a bad file leaves the running one in place)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from simulators.server import MockUpstream
from tests.support.servers import ServerThread, free_port

KEY = "sk-life-1"
NEW_KEY = "sk-life-2"
ADMIN = "sk-life-admin"


def write_config(path: Path, upstream_url: str, extra_keys: list[dict] | None = None, broken: bool = False) -> None:
    cfg = {
        "server": {"access_log": False, "drain_delay": 1.0, "shutdown_grace": 15},
        "keys": [{"name": "a", "key": KEY}, {"name": "ops", "key": ADMIN, "admin": True}, *(extra_keys or [])],
        "providers": {"up": {"kind": "openai", "base_url": upstream_url + "/v1"}, "mock": {"kind": "mock"}},
    }
    if broken:
        cfg["keys"][0]["limits"] = {"rpn": 1}  # a typo: must be rejected
    path.write_text(yaml.safe_dump(cfg))


class Proc:
    def __init__(self, config: Path, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = config.with_suffix(".log")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("gateway did not start: " + self.log.read_text())

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)


@pytest.fixture(scope="module")
def slow_upstream():
    with ServerThread(MockUpstream("openai", chunks=20, chunk_delay_ms=60)) as srv:
        yield srv


def chat(url: str, key: str = KEY) -> int:
    return httpx.post(
        url + "/v1/chat/completions",
        json={"model": "mock/echo", "messages": [{"role": "user", "content": "x"}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    ).status_code


def test_sigterm_drains_50_live_streams_and_exits_zero(tmp_path, slow_upstream):
    cfg = tmp_path / "c.yaml"
    write_config(cfg, slow_upstream.url)
    proc = Proc(cfg)
    started = threading.Semaphore(0)
    results: list[str] = []
    lock = threading.Lock()

    def stream() -> None:
        body = {"model": "up/m", "messages": [{"role": "user", "content": "go"}], "stream": True}
        text = ""
        try:
            with httpx.stream(
                "POST",
                proc.url + "/v1/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {KEY}"},
                timeout=30,
            ) as r:
                for chunk in r.iter_text():
                    if not text:
                        started.release()
                    text += chunk
        except httpx.HTTPError as e:
            text += f"ERROR {e!r}"
            started.release()
        with lock:
            results.append(text)

    threads = [threading.Thread(target=stream) for _ in range(50)]
    try:
        for t in threads:
            t.start()
        for _ in range(50):
            assert started.acquire(timeout=20)
        proc.p.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        assert httpx.get(proc.url + "/readyz", timeout=5).status_code == 503
        for t in threads:
            t.join(30)
        assert proc.p.wait(30) == 0
    finally:
        proc.stop()
    assert len(results) == 50
    assert all(r.rstrip().endswith("data: [DONE]") for r in results), [r[-200:] for r in results if "[DONE]" not in r][
        :2
    ]


def test_sighup_reload_valid_then_invalid(tmp_path, slow_upstream):
    cfg = tmp_path / "c.yaml"
    write_config(cfg, slow_upstream.url)
    proc = Proc(cfg)
    try:
        assert chat(proc.url, NEW_KEY) == 401
        write_config(cfg, slow_upstream.url, extra_keys=[{"name": "b", "key": NEW_KEY}])
        proc.p.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while chat(proc.url, NEW_KEY) != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert chat(proc.url, NEW_KEY) == 200
        write_config(cfg, slow_upstream.url, broken=True)
        proc.p.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert proc.p.poll() is None and chat(proc.url, NEW_KEY) == 200 and chat(proc.url) == 200
        assert "keys.0.limits.rpn" in proc.log.read_text()
    finally:
        proc.stop()


def test_admin_reload_endpoint(tmp_path, slow_upstream):
    cfg = tmp_path / "c.yaml"
    write_config(cfg, slow_upstream.url)
    proc = Proc(cfg)
    try:
        r = httpx.post(proc.url + "/admin/reload", headers={"authorization": f"Bearer {KEY}"})
        assert r.status_code == 403
        write_config(cfg, slow_upstream.url, broken=True)
        r = httpx.post(proc.url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 400 and "keys.0.limits.rpn" in r.json()["error"]["message"]
        write_config(cfg, slow_upstream.url, extra_keys=[{"name": "b", "key": NEW_KEY}])
        r = httpx.post(proc.url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200, r.text
        assert chat(proc.url, NEW_KEY) == 200
    finally:
        proc.stop()


def test_sighup_with_two_workers_rolls_them(tmp_path, slow_upstream):
    cfg = tmp_path / "c.yaml"
    write_config(cfg, slow_upstream.url)
    proc = Proc(cfg, workers=2)
    try:
        write_config(cfg, slow_upstream.url, extra_keys=[{"name": "b", "key": NEW_KEY}])
        proc.p.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        ok = 0
        while ok < 10 and time.monotonic() < deadline:  # both workers answer with the new key
            ok = ok + 1 if chat(proc.url, NEW_KEY) == 200 else 0
            time.sleep(0.05)
        assert ok == 10
        proc.p.send_signal(signal.SIGTERM)
        assert proc.p.wait(30) == 0
    finally:
        proc.stop()
