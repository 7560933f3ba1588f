"""The access log: one JSON line per request on stderr, never prompts, completions or credentials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from tests.support.servers import free_port

KEY = "sk-access-log-client-key"
SECRET_PROMPT = "the launch code is swordfish"


def run_gateway(tmp_path: Path, access_log: bool) -> tuple[subprocess.Popen[bytes], str, Path]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "server": {"access_log": access_log, "drain_delay": 0},
                "keys": [{"name": "team-log", "key": KEY}],
                "providers": {"mock": {"kind": "mock"}},
            }
        )
    )
    port = free_port()
    log = tmp_path / "stderr.log"
    p = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env={**os.environ, "PYTHONUNBUFFERED": "0"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    return p, url, log


def requests(url: str) -> None:
    h = {"authorization": f"Bearer {KEY}", "x-request-id": "req-log-1"}
    body = {"model": "mock/echo", "messages": [{"role": "user", "content": SECRET_PROMPT}]}
    assert httpx.post(url + "/v1/chat/completions", json=body, headers=h).status_code == 200
    body["stream"] = True
    assert httpx.post(url + "/v1/chat/completions", json=body, headers=h).status_code == 200
    assert (
        httpx.post(url + "/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-wrong"}).status_code
        == 401
    )


def lines(log: Path) -> list[dict]:
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_one_json_line_per_request_without_secrets(tmp_path):
    p, url, log = run_gateway(tmp_path, access_log=True)
    try:
        requests(url)
        time.sleep(0.3)  # lines are flushed within 50 ms
        got = lines(log)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(20)
    assert len(got) == 3
    first, streamed, refused = got
    assert first["request_id"] == "req-log-1" and first["key"] == "team-log" and first["model"] == "mock/echo"
    assert first["provider"] == "mock" and first["status"] == 200 and first["stream"] is False
    assert first["prompt_tokens"] == 5 and first["completion_tokens"] == 5 and first["latency_ms"] >= 0
    assert first["ttft_ms"] is None and streamed["stream"] is True and streamed["ttft_ms"] >= 0
    assert refused["status"] == 401 and refused["key"] == ""
    text = log.read_text()
    assert "swordfish" not in text and KEY not in text and "sk-wrong" not in text


def test_access_log_off_switch(tmp_path):
    p, url, log = run_gateway(tmp_path, access_log=False)
    try:
        requests(url)
        time.sleep(0.3)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(20)
    assert lines(log) == []
