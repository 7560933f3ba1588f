"""Runtime keys end to end: real gateways (two replicas sharing one Redis prefix), real Redis, the
CLI as a subprocess and the official OpenAI SDK.

Tests that stop Redis, or count its commands, run their own ``redis-server``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
import yaml

from gateway.accounting.usage.redis_store import RedisStore
from gateway.config import UsageConfig
from gateway.governance import keystore as ks
from gateway.governance.keystore import KeyStore, RuntimeKey
from tests.e2e.conftest import ADMIN_KEY, CLIENT_KEY, OTHER_KEY, base_config
from tests.support import wait_until
from tests.support.redis import REDIS_URL, RedisProcess, delete_prefix
from tests.support.servers import ServerThread, free_port

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")

ROOT = Path(__file__).resolve().parent.parent.parent
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
CHAT = {"model": "mock/echo", "messages": [{"role": "user", "content": "hello"}]}
Factory = Callable[[dict[str, Any]], ServerThread]


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def chat(srv: ServerThread, key: str, **kw: Any) -> httpx.Response:
    return httpx.post(f"{srv.url}/v1/chat/completions", headers=bearer(key), json={**CHAT, **kw}, timeout=10)


def create(srv: ServerThread, **body: Any) -> dict[str, Any]:
    r = httpx.post(f"{srv.url}/admin/keys", headers=ADMIN, json=body, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def until_status(srv: Any, key: str, status: int, timeout: float = 3.0) -> float:
    """Seconds until ``key`` gets ``status`` on ``srv`` (polling /v1/models); fails past ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if httpx.get(f"{srv.url}/v1/models", headers=bearer(key), timeout=5).status_code == status:
            return time.monotonic() - t0
        time.sleep(0.01)
    raise AssertionError(f"no {status} within {timeout}s")


@pytest.fixture
def shared(redis_prefix: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        r.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    yield r
    delete_prefix(r, redis_prefix)
    r.close()


def config(url: str, prefix: str, **extra: Any) -> dict[str, Any]:
    cfg = base_config(usage={"redis_url": url, "prefix": prefix, "flush_interval": 0.05}, **extra)
    cfg["keys"][0]["team"] = "payments"  # team-a, a config key, is in the payments team
    return cfg


@pytest.fixture
def pair(gateway_for: Factory, shared: redis.Redis, redis_prefix: str) -> tuple[ServerThread, ServerThread]:
    """Two replicas on one Redis prefix."""
    cfg = config(REDIS_URL, redis_prefix, teams={"payments": {"limits": {"rpm": 1000}}})
    return gateway_for(cfg), gateway_for(cfg)


# -- across replicas -------------------------------------------------------------------------------
def test_created_on_one_replica_is_used_on_the_other_at_once(pair: tuple[ServerThread, ServerThread]) -> None:
    a, b = pair
    for i in range(5):
        made = create(a, name=f"svc-{i}", team="payments", models=["mock/echo"], limits={"rpm": 600})
        assert made["key"].startswith("sk-sy-") and made["source"] == "runtime"
        r = chat(b, made["key"])  # no wait at all
        assert r.status_code == 200, r.text
        assert r.headers["x-ratelimit-limit-requests"] == "600"
    r = chat(b, made["key"], model="mock/other")
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    listed = httpx.get(f"{b.url}/admin/keys", headers=ADMIN).json()["data"]
    assert {k["name"]: k["source"] for k in listed} == {
        "team-a": "config",
        "team-b": "config",
        "ops": "config",
        **{f"svc-{i}": "runtime" for i in range(5)},
    }


def test_revoked_on_one_replica_is_refused_on_the_other_within_a_second(
    pair: tuple[ServerThread, ServerThread],
) -> None:
    a, b = pair
    keys = {n: create(a, name=n)["key"] for n in ("revoked", "disabled", "narrowed")}
    for k in keys.values():
        assert chat(b, k).status_code == 200  # cached on b
    assert httpx.delete(f"{a.url}/admin/keys/revoked", headers=ADMIN).status_code == 200
    assert until_status(b, keys["revoked"], 401) < 1.0
    r = httpx.patch(f"{a.url}/admin/keys/disabled", headers=ADMIN, json={"disabled": True})
    assert r.status_code == 200 and r.json()["status"] == "disabled"
    assert until_status(b, keys["disabled"], 401) < 1.0
    assert chat(b, keys["disabled"]).json()["error"]["code"] == "invalid_api_key"
    httpx.patch(f"{a.url}/admin/keys/disabled", headers=ADMIN, json={"disabled": False})
    assert until_status(b, keys["disabled"], 200) < 1.0
    # Changed limits and models apply on the other replica just as fast.
    r = httpx.patch(f"{a.url}/admin/keys/narrowed", headers=ADMIN, json={"models": ["openai/*"], "limits": {"rpm": 5}})
    assert r.status_code == 200 and r.json()["models"] == ["openai/*"]
    t0 = time.monotonic()
    while chat(b, keys["narrowed"]).status_code != 403:
        assert time.monotonic() - t0 < 1.0
        time.sleep(0.01)


def test_a_missed_message_is_corrected_by_the_version_check(
    pair: tuple[ServerThread, ServerThread], shared: redis.Redis, redis_prefix: str
) -> None:
    a, b = pair
    key = create(a, name="quiet")["key"]
    assert chat(b, key).status_code == 200
    # A change written straight to Redis, with the version bumped but no message published.
    shared.hset(f"{redis_prefix}key:quiet", "disabled", "1")
    shared.incr(f"{redis_prefix}keys:version")
    assert until_status(b, key, 401, timeout=3) < ks.CHECK_INTERVAL + 1.0
    assert until_status(a, key, 401, timeout=3) < ks.CHECK_INTERVAL + 1.0


def test_a_revocation_interrupted_half_way_is_finished_by_a_retry(
    pair: tuple[ServerThread, ServerThread], shared: redis.Redis, redis_prefix: str
) -> None:
    a, b = pair
    key = create(a, name="half")["key"]
    assert chat(b, key).status_code == 200
    shared.delete(f"{redis_prefix}key:half")  # as if Redis went away right after the hash was deleted
    r = httpx.delete(f"{b.url}/admin/keys/half", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert until_status(a, key, 401) < 1.0
    assert httpx.delete(f"{b.url}/admin/keys/half", headers=ADMIN).status_code == 404
    assert not shared.sismember(f"{redis_prefix}keys", "half")


def test_expiry(pair: tuple[ServerThread, ServerThread]) -> None:
    a, b = pair
    made = create(a, name="short-lived", expires_at=int(time.time()) + 2)
    assert made["expires_at"].endswith("Z") and made["status"] == "active"
    assert chat(b, made["key"]).status_code == 200
    time.sleep(2.2)
    for srv in (a, b):
        r = chat(srv, made["key"])
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{a.url}/admin/keys/short-lived", headers=ADMIN).json()["status"] == "expired"
    # An expiry can be lifted again.
    r = httpx.patch(f"{a.url}/admin/keys/short-lived", headers=ADMIN, json={"expires_at": None})
    assert r.status_code == 200 and r.json()["expires_at"] is None
    assert until_status(b, made["key"], 200) < 1.0


def test_rotation_with_a_grace_period(pair: tuple[ServerThread, ServerThread]) -> None:
    a, b = pair
    old = create(a, name="rotating")["key"]
    assert chat(b, old).status_code == 200
    r = httpx.post(f"{a.url}/admin/keys/rotating/rotate", headers=ADMIN, json={"grace_seconds": 2})
    assert r.status_code == 200, r.text
    new, until = r.json()["key"], r.json()["previous_key_expires_at"]
    assert new != old and new.startswith("sk-sy-") and until is not None
    t_rotated = time.monotonic()
    assert chat(b, new).status_code == 200 and chat(b, old).status_code == 200
    assert chat(a, new).status_code == 200 and chat(a, old).status_code == 200
    time.sleep(max(0.0, 2.1 - (time.monotonic() - t_rotated)))
    for srv in (a, b):
        assert chat(srv, old).status_code == 401
        assert chat(srv, new).status_code == 200
    # Without a grace period the old key stops at once, on every replica.
    r = httpx.post(f"{b.url}/admin/keys/rotating/rotate", headers=ADMIN)
    newer = r.json()["key"]
    assert r.json()["previous_key_expires_at"] is None
    assert until_status(a, new, 401) < 1.0 and chat(a, newer).status_code == 200


# -- the API's rules ---------------------------------------------------------------------------------
def test_admin_only_config_keys_read_only_and_errors_in_openai_shape(
    pair: tuple[ServerThread, ServerThread],
) -> None:
    a, _ = pair
    for method, path in (
        ("POST", "/admin/keys"),
        ("GET", "/admin/keys"),
        ("GET", "/admin/keys/team-a"),
        ("DELETE", "/admin/keys/x"),
        ("POST", "/admin/keys/x/rotate"),
        ("GET", "/admin/audit"),
    ):
        r = httpx.request(method, a.url + path, headers=bearer(CLIENT_KEY), json={"name": "x"})
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error", (method, path)
        assert httpx.request(method, a.url + path).status_code == 401
    config_key = httpx.get(f"{a.url}/admin/keys/team-a", headers=ADMIN).json()
    assert config_key["source"] == "config" and config_key["team"] == "payments"
    for method, path, body in (
        ("PATCH", "/admin/keys/team-a", {"disabled": True}),
        ("DELETE", "/admin/keys/ops", None),
        ("POST", "/admin/keys/team-b/rotate", {}),
        ("POST", "/admin/keys", {"name": "team-b"}),
    ):
        r = httpx.request(method, a.url + path, headers=ADMIN, json=body)
        assert r.status_code == 409 and r.json()["error"]["param"] == "name", (method, path, r.text)
    create(a, name="taken")
    r = httpx.post(f"{a.url}/admin/keys", headers=ADMIN, json={"name": "taken"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "key_exists"
    for method, path in (("GET", "/admin/keys/none"), ("PATCH", "/admin/keys/none"), ("DELETE", "/admin/keys/none")):
        r = httpx.request(method, a.url + path, headers=ADMIN, json={"disabled": True})
        assert r.status_code == 404 and r.json()["error"]["code"] == "key_not_found", (method, r.text)
    r = httpx.post(f"{a.url}/admin/keys", headers=ADMIN, content=b"{nope")
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.post(f"{a.url}/admin/keys", headers=ADMIN, json={"name": "x", "files_provider": "nowhere"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "files_provider"
    r = httpx.patch(f"{a.url}/admin/keys/taken", headers=ADMIN, json={})
    assert r.status_code == 400
    r = httpx.get(f"{a.url}/admin/audit?limit=0", headers=ADMIN)
    assert r.status_code == 400 and r.json()["error"]["param"] == "limit"


def test_audit_records_every_change_newest_first(pair: tuple[ServerThread, ServerThread]) -> None:
    a, b = pair
    create(a, name="audited", team="payments")
    httpx.patch(f"{b.url}/admin/keys/audited", headers=ADMIN, json={"limits": {"rpm": 5}, "metadata": {"o": "x"}})
    httpx.post(f"{a.url}/admin/keys/audited/rotate", headers=ADMIN, json={"grace_seconds": 60})
    httpx.delete(f"{b.url}/admin/keys/audited", headers=ADMIN)
    body = httpx.get(f"{a.url}/admin/audit", headers=ADMIN).json()
    rows = body["data"]
    assert [r["action"] for r in rows] == ["revoke", "rotate", "update", "create"] and not body["has_more"]
    assert all(r["admin"] == "ops" and r["key"] == "audited" and r["time"].endswith("Z") for r in rows)
    assert rows[1]["detail"] == "grace_seconds=60" and rows[2]["detail"] == "fields=limits,metadata"
    page = httpx.get(f"{a.url}/admin/audit?limit=2", headers=ADMIN).json()
    assert [r["id"] for r in page["data"]] == [rows[0]["id"], rows[1]["id"]] and page["has_more"]
    rest = httpx.get(f"{a.url}/admin/audit?limit=2&before={rows[1]['id']}", headers=ADMIN).json()
    assert [r["id"] for r in rest["data"]] == [rows[2]["id"], rows[3]["id"]]


def test_no_plaintext_key_in_redis_logs_or_answers(
    gateway_for: Factory,
    shared: redis.Redis,
    redis_prefix: str,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = config(REDIS_URL, redis_prefix)
    cfg["server"]["access_log"] = True
    a, b = gateway_for(cfg), gateway_for(cfg)
    secrets: list[str] = []
    made = create(a, name="secretive", team="payments", metadata={"owner": "me"})
    secrets.append(made["key"])
    assert chat(b, made["key"]).status_code == 200
    rotated = httpx.post(f"{a.url}/admin/keys/secretive/rotate", headers=ADMIN, json={"grace_seconds": 30}).json()
    secrets.append(rotated["key"])
    assert chat(b, rotated["key"]).status_code == 200
    httpx.patch(f"{b.url}/admin/keys/secretive", headers=ADMIN, json={"disabled": True})
    assert chat(a, rotated["key"]).status_code in (200, 401)
    answers = [
        httpx.get(f"{srv.url}{path}", headers=ADMIN).text
        for srv in (a, b)
        for path in ("/admin/keys", "/admin/keys/secretive", "/admin/audit", "/v1/usage?team=payments")
    ]
    answers.append(httpx.get(f"{a.url}/metrics").text)
    time.sleep(0.3)  # usage records flushed
    dump: list[str] = []
    for k in shared.scan_iter(match=f"{redis_prefix}*"):
        t = shared.type(k)
        dump.append(k)
        if t == "hash":
            dump.append(str(shared.hgetall(k)))
        elif t == "string":
            dump.append(str(shared.get(k)))
        elif t == "set":
            dump.append(str(shared.smembers(k)))
        elif t == "stream":
            dump.append(str(shared.xrange(k)))
        elif t == "zset":
            dump.append(str(shared.zrange(k, 0, -1)))
    redis_text = "\n".join(dump)
    assert f"{redis_prefix}keyidx:" in redis_text  # the layout is there ...
    out, err = capfd.readouterr()
    logs = "\n".join([out, err, caplog.text])
    assert "secretive" in logs  # the access log names the key ...
    digests = [hashlib.sha256(s.encode()).hexdigest() for s in secrets]
    for s in secrets:
        secret_part = s.removeprefix("sk-sy-")
        for where, text in (("redis", redis_text), ("logs", logs), ("answers", "\n".join(answers))):
            assert secret_part not in text, where  # ... but never the key
    for d in digests:
        assert d not in "\n".join(answers) and d not in logs


# -- Redis failures, brute force --------------------------------------------------------------------
@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    proc = RedisProcess(tmp_path).start()
    yield proc
    proc.stop()


def test_redis_down_known_keys_still_served_changes_503(own_redis: RedisProcess, gateway_for: Factory) -> None:
    cfg = config(own_redis.url, "sy:")
    cfg["server"]["limits_when_redis_down"] = "allow"
    a, b = gateway_for(cfg), gateway_for(cfg)
    key = create(a, name="survivor", limits={"rpm": 100})["key"]
    assert chat(b, key).status_code == 200
    own_redis.stop()
    for srv in (a, b):
        t0 = time.monotonic()
        for _ in range(5):
            r = chat(srv, key)
            assert r.status_code == 200, r.text
        for client_key in (CLIENT_KEY, OTHER_KEY):
            assert chat(srv, client_key).status_code == 200
        r = chat(srv, "sk-sy-" + "x" * 43)
        assert r.status_code == 401
        assert time.monotonic() - t0 < 3.0  # nothing waited on the dead Redis for long
    r = httpx.post(f"{a.url}/admin/keys", headers=ADMIN, json={"name": "newcomer"}, timeout=10)
    assert r.status_code == 503 and r.json()["error"]["code"] == "keystore_unavailable"
    assert "retry-after" in r.headers
    for method, path in (("DELETE", "/admin/keys/survivor"), ("POST", "/admin/keys/survivor/rotate")):
        assert httpx.request(method, a.url + path, headers=ADMIN, timeout=10).status_code == 503
    listed = httpx.get(f"{b.url}/admin/keys/survivor", headers=ADMIN)
    assert listed.status_code == 200 and listed.json()["status"] == "active"  # served from the cache
    # Redis back (empty, as after a restart without persistence): changes work again.
    own_redis.start()  # stopped by the fixture after the gateways
    t0 = time.monotonic()
    while httpx.post(f"{a.url}/admin/keys", headers=ADMIN, json={"name": "newcomer"}).status_code != 201:
        assert time.monotonic() - t0 < 10
        time.sleep(0.2)


class Serve:
    """``switchyard serve`` as a subprocess (a replica of its own, with its own GIL)."""

    def __init__(self, tmp_path: Path, cfg: dict[str, Any], name: str) -> None:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**cfg, "server": {**cfg.get("server", {}), "drain_delay": 0}}))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"{name}.log"
        argv = ["serve", "--config", str(path), "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", *argv],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

        def up() -> bool:
            try:
                return httpx.get(self.url + "/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(up, timeout=30, step=0.1), self.log.read_text()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[dict[str, Any], str], Serve]]:
    started: list[Serve] = []

    def start(cfg: dict[str, Any], name: str) -> Serve:
        s = Serve(tmp_path, cfg, name)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def test_two_serve_processes_share_runtime_keys(
    serve: Callable[[dict[str, Any], str], Serve], shared: redis.Redis, redis_prefix: str
) -> None:
    cfg = config(REDIS_URL, redis_prefix)
    a, b = serve(cfg, "a"), serve(cfg, "b")
    made = httpx.post(f"{a.url}/admin/keys", headers=ADMIN, json={"name": "proc-key"}).json()
    r = httpx.post(f"{b.url}/v1/chat/completions", headers=bearer(made["key"]), json=CHAT)
    assert r.status_code == 200, r.text
    assert httpx.delete(f"{b.url}/admin/keys/proc-key", headers=ADMIN).status_code == 200
    assert until_status(a, made["key"], 401) < 1.0


async def _flood(port: int, n: int, conns: int) -> list[int]:
    """``n`` requests with distinct wrong keys over ``conns`` keep-alive connections (a raw client:
    the test must measure the gateway, not an HTTP library)."""
    statuses: list[int] = []
    counter = iter(range(n))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in counter:
                guess = f"sk-sy-guess-{i:08d}-{os.urandom(8).hex()}"
                writer.write(f"GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {guess}\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                statuses.append(status)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(conns)))
    return statuses


def test_brute_force_of_10000_wrong_keys_costs_redis_a_bounded_number_of_reads(
    own_redis: RedisProcess, serve: Callable[[dict[str, Any], str], Serve]
) -> None:
    srv = serve(config(own_redis.url, "sy:"), "brute")
    key = httpx.post(f"{srv.url}/admin/keys", headers=ADMIN, json={"name": "legit"}).json()["key"]
    time.sleep(2 * ks.CHECK_INTERVAL)  # the creation's own message has been applied (one HGETALL)
    r = own_redis.client()
    before = r.info("stats")["keyspace_misses"], r.info("commandstats")
    t0 = time.monotonic()
    statuses = asyncio.run(_flood(srv.port, 10_000, 32))
    elapsed = time.monotonic() - t0
    after = r.info("stats")["keyspace_misses"], r.info("commandstats")
    r.close()
    assert statuses == [401] * 10_000

    def calls(stats: dict[str, Any], cmd: str) -> int:
        return int(stats.get(f"cmdstat_{cmd}", {}).get("calls", 0))

    # Every wrong key that reached Redis is one GET of a missing keyidx entry: a keyspace miss.
    lookups = after[0] - before[0]
    gets = calls(after[1], "get") - calls(before[1], "get")
    hgetalls = calls(after[1], "hgetall") - calls(before[1], "hgetall")
    bound = ks.LOOKUP_BURST + ks.LOOKUP_RATE * elapsed
    print(
        f"\nbrute force: 10000 wrong keys in {elapsed:.1f}s -> {lookups} index lookups in Redis "
        f"(bound {bound:.0f}); all GETs {gets} (the rest are version checks every {ks.CHECK_INTERVAL}s), "
        f"HGETALL {hgetalls}"
    )
    assert lookups <= bound + 1
    assert gets <= bound + elapsed / ks.CHECK_INTERVAL + 3
    assert hgetalls == 0  # no wrong key ever matched an index entry
    assert httpx.post(f"{srv.url}/v1/chat/completions", headers=bearer(key), json=CHAT).status_code == 200


# -- the CLI, the OpenAI SDK, teams, no Redis ------------------------------------------------------
def cli(url: str, *args: str, admin: str | None = ADMIN_KEY) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SWITCHYARD_ADMIN_KEY"}
    if admin is not None:
        env["SWITCHYARD_ADMIN_KEY"] = admin
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "--url", url, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_cli_against_a_live_gateway(pair: tuple[ServerThread, ServerThread]) -> None:
    a, b = pair
    made = cli(a.url, "create", "cli-svc", "--team", "payments", "--model", "mock/*", "--rpm", "60",
               "--expires-at", "2099-01-01T00:00:00Z", "--metadata", "owner=ops")  # fmt: skip
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("sk-sy-") and "not shown again" in made.stderr
    assert chat(b, key).status_code == 200
    listed = cli(a.url, "list")
    assert listed.returncode == 0 and "cli-svc" in listed.stdout and "runtime" in listed.stdout
    assert "team-a" in listed.stdout and key not in listed.stdout
    as_json = cli(a.url, "list", "--team", "payments", "--json")
    names = {k["name"] for k in __import__("json").loads(as_json.stdout)["data"]}
    assert names == {"team-a", "cli-svc"}
    rotated = cli(a.url, "rotate", "cli-svc", "--grace-seconds", "30")
    assert rotated.returncode == 0 and rotated.stdout.strip().startswith("sk-sy-")
    assert "until" in rotated.stderr
    new = rotated.stdout.strip()
    assert chat(b, key).status_code == 200 and chat(b, new).status_code == 200
    revoked = cli(a.url, "revoke", "cli-svc")
    assert revoked.returncode == 0
    until_status(b, new, 401)
    # Failures: a clear message and a non-zero exit.
    again = cli(a.url, "revoke", "cli-svc")
    assert again.returncode == 1 and "404" in again.stderr
    assert cli(a.url, "list", admin=None).returncode == 1
    assert "401" in cli(a.url, "list", admin="sk-wrong").stderr
    assert "403" in cli(a.url, "list", admin=CLIENT_KEY).stderr
    assert "cannot reach" in cli("http://127.0.0.1:9", "list").stderr


def test_openai_sdk_with_a_runtime_key(pair: tuple[ServerThread, ServerThread]) -> None:
    a, b = pair
    key = create(a, name="sdk-app", models=["mock/echo"])["key"]
    client = openai.OpenAI(base_url=f"{b.url}/v1", api_key=key, max_retries=0)
    out = client.chat.completions.create(model="mock/echo", messages=[{"role": "user", "content": "hi"}])
    assert out.choices[0].message.content
    stream = client.chat.completions.create(
        model="mock/echo", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert [m.id for m in client.models.list()]
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="mock/other", messages=[{"role": "user", "content": "hi"}])
    httpx.delete(f"{a.url}/admin/keys/sdk-app", headers=ADMIN)
    until_status(b, key, 401)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="mock/echo", messages=[{"role": "user", "content": "hi"}])


def test_team_limits_and_usage_shared_by_config_and_runtime_keys(
    gateway_for: Factory, shared: redis.Redis, redis_prefix: str
) -> None:
    cfg = config(REDIS_URL, redis_prefix, teams={"payments": {"limits": {"rpm": 4}}})
    a, b = gateway_for(cfg), gateway_for(cfg)
    k1 = create(a, name="pay-1", team="payments")["key"]
    k2 = create(a, name="pay-2", team="payments")["key"]
    other = create(a, name="search-1", team="search")["key"]
    statuses = [chat(srv, k).status_code for srv, k in ((a, k1), (b, k2), (a, CLIENT_KEY), (b, k1))]
    assert statuses == [200, 200, 200, 200]
    r = chat(b, k2)
    assert r.status_code == 429 and "team 'payments'" in r.json()["error"]["message"]
    assert r.headers["retry-after"]
    assert chat(a, other).status_code == 200  # another team is not affected
    gw = a.app
    assert wait_until(lambda: gw.writer.status()["buffered"] == 0 if gw.writer else True, timeout=5)
    time.sleep(0.3)

    def usage(key: str, team: str) -> httpx.Response:
        return httpx.get(f"{b.url}/v1/usage", params={"team": team}, headers=bearer(key))

    # The team's keys (config or runtime) and admins may read the team's usage; others may not.
    for reader in (k1, CLIENT_KEY, ADMIN_KEY):
        body = usage(reader, "payments").json()
        assert body["object"] == "usage" and body["team"] == "payments" and "key" not in body
    body = usage(ADMIN_KEY, "payments").json()
    assert body["requests"] >= 5 and body["errors"] >= 1 and body["models"]["mock/echo"]["requests"] >= 5
    day = time.strftime("%Y%m%d", time.gmtime())
    assert int(shared.hget(f"{redis_prefix}team:payments:{day}", "requests") or 0) >= 5
    r = usage(other, "payments")
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    assert usage(OTHER_KEY, "payments").status_code == 403
    r = httpx.get(f"{b.url}/v1/usage", params={"team": "payments", "key": "pay-1"}, headers=ADMIN)
    assert r.status_code == 400 and r.json()["error"]["param"] == "team"


def test_without_redis_keys_live_in_the_process(gateway_for: Factory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    srv = gateway_for(base_config())
    assert "live in this process only" in caplog.text
    key = create(srv, name="local", team="solo")["key"]
    assert chat(srv, key).status_code == 200
    assert httpx.get(f"{srv.url}/admin/audit", headers=ADMIN).json()["data"][0]["action"] == "create"
    httpx.delete(f"{srv.url}/admin/keys/local", headers=ADMIN)
    assert chat(srv, key).status_code == 401


# -- Redis Cluster (where a small one can be made locally) -------------------------------------------
def test_keystore_on_redis_cluster(cluster: list[RedisProcess]) -> None:
    """No CROSSSLOT anywhere: creation, the index, sync, pub/sub, rotation and revocation on a cluster."""

    async def run() -> None:
        stores = [RedisStore(UsageConfig(redis_url=n.url, prefix="sy:")) for n in cluster[:2]]
        one, two = (KeyStore(s, "sy:") for s in stores)
        await one.start()
        await two.start()
        try:
            assert one.synced and two.synced
            made = []
            for i in range(6):  # names and digests spread over the slots
                key, secret = await one.create(RuntimeKey(name=f"c-{i}", digest=""), "ops")
                made.append((key, hashlib.sha256(secret.encode()).hexdigest()))
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            while any(two.get(k.name) is None for k, _ in made):
                assert loop.time() - t0 < 1.0
                await asyncio.sleep(0.01)
            assert all(two.find(d).name == k.name for k, d in made)  # type: ignore[union-attr]
            # A third replica starting now reads them all (a full sync over every slot) ...
            three = KeyStore(RedisStore(UsageConfig(redis_url=cluster[2].url, prefix="sy:")), "sy:")
            three._install = lambda key: None  # type: ignore[method-assign]  # only the sync may fill it
            await three.start()
            assert {k.name for k in three.entries()} == {k.name for k, _ in made}
            await three.close()
            await three.store.close()
            # ... and an unknown digest is looked up through the index on whichever node holds it.
            fresh = KeyStore(RedisStore(UsageConfig(redis_url=cluster[2].url, prefix="sy:")), "sy:")
            fresh.synced = True
            await fresh.store.client()  # connected, as the sync task leaves it in a running gateway
            key, digest = made[3]
            assert fresh.find(digest) is None and (await fresh.look_up(digest)).name == key.name
            await fresh.store.close()
            rotated, secret = await two.rotate("c-1", 60, "ops")
            await one.revoke("c-2", "ops")
            t0 = loop.time()
            while one.get("c-1") != rotated or two.get("c-2") is not None:
                assert loop.time() - t0 < 1.0
                await asyncio.sleep(0.01)
            assert one.find(hashlib.sha256(secret.encode()).hexdigest()) is not None
            assert one.find(made[1][1]) is not None  # in its grace period
            rows, _ = await two.audit(3)
            assert [r["action"] for r in rows] == ["revoke", "rotate", "create"]
        finally:
            for k in (one, two):
                await k.close()
            for s in stores:
                await s.close()

    asyncio.run(run())
