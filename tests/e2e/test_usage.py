"""Usage accounting through the running gateway, driven with the official OpenAI SDK.

Exact Redis counts after a mix of requests, the log stream, ``GET /v1/usage`` and ``/metrics``;
a Redis outage in the middle of the load (nothing lost, nothing twice); a hung Redis that does
not slow requests; and two workers whose metrics add up on one scrape.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
import yaml
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import ADMIN_KEY, CLIENT_KEY, OTHER_KEY, GatewayFor, Upstream, base_config, sdk
from tests.support import wait_until
from tests.support.redis import REDIS_URL, RedisProcess, SilentListener
from tests.support.servers import ServerThread, free_port

FIELDS = ("requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens", "cost_micro_usd")
# List prices the catalog gives the models of this mix, in pico-dollars per token (input, output);
# the mock models have none (recorded at cost 0, unpriced).
PRICES = {"openai/gpt-4o-mini": (150_000, 600_000)}


def cost_micro(model: str, p: int, c: int) -> int:
    pin, pout = PRICES.get(model, (0, 0))
    return (p * pin + c * pout + 500_000) // 1_000_000


def usage_config(upstream_url: str | None, redis_url: str, prefix: str) -> dict[str, Any]:
    return base_config(
        upstream_url,
        server={"access_log": False, "shutdown_grace": 1},
        usage={"redis_url": redis_url, "prefix": prefix, "flush_interval": 0.02, "batch_size": 50},
    )


def hashes(r: redis.Redis, prefix: str, key: str) -> dict[str, int]:
    """The key's usage hashes summed over days (a test may straddle UTC midnight)."""
    out: Counter[str] = Counter()
    for name in r.scan_iter(match=f"{prefix}usage:{key}:*"):
        out.update({f: int(v) for f, v in r.hgetall(name).items()})
    return dict(out)


class Expected:
    """What each request should add, from what the client itself was told."""

    def __init__(self) -> None:
        self.models: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
        self.log: dict[str, dict[str, str]] = {}

    def add(
        self,
        rid: str,
        model: str,
        endpoint: str,
        status: int,
        stream: bool,
        p: int = 0,
        c: int = 0,
        hash_model: str | None = None,
    ) -> None:
        # ``hash_model``: a name that never routed is counted under "other" in the hash (the log keeps it).
        for i, inc in enumerate((1, 1 if status >= 400 else 0, p, c, p + c, cost_micro(model, p, c))):
            self.models[hash_model or model][i] += inc
        self.log[rid] = {
            "model": model,
            "endpoint": endpoint,
            "status": str(status),
            "stream": "1" if stream else "0",
            "prompt_tokens": str(p),
            "completion_tokens": str(c),
        }

    def hash(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for model, vals in self.models.items():
            for f, v in zip(FIELDS, vals, strict=True):
                out[f] += v
                out[f"{model}|{f}"] = v
        return dict(out)


def run_mix(gw: ServerThread, exp: Expected) -> None:
    """Chat, completions, embeddings, streams with and without include_usage, n > 1, errors."""
    c = sdk(gw)
    chat = "/v1/chat/completions"

    def rid(name: str) -> dict[str, str]:
        return {"x-request-id": name}

    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there world"}]
    r = c.chat.completions.create(model="mock/echo", messages=msgs, extra_headers=rid("r-chat"))
    exp.add("r-chat", "mock/echo", chat, 200, False, r.usage.prompt_tokens, r.usage.completion_tokens)

    r = c.chat.completions.create(model="openai/gpt-4o-mini", messages=msgs, n=3, extra_headers=rid("r-chat-n3"))
    assert len(r.choices) == 3
    exp.add("r-chat-n3", "openai/gpt-4o-mini", chat, 200, False, r.usage.prompt_tokens, r.usage.completion_tokens)

    for model in ("mock/echo", "openai/gpt-4o-mini"):
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "one two three four"}]}
        chunks = list(
            c.chat.completions.create(
                **body, stream=True, stream_options={"include_usage": True}, extra_headers=rid(f"r-su-{model}")
            )
        )
        u = chunks[-1].usage
        exp.add(f"r-su-{model}", model, chat, 200, True, u.prompt_tokens, u.completion_tokens)
        # The same request without include_usage: the client sees no usage, the gateway still counts it.
        chunks = list(c.chat.completions.create(**body, stream=True, extra_headers=rid(f"r-s-{model}")))
        assert all(ch.usage is None for ch in chunks)
        exp.add(f"r-s-{model}", model, chat, 200, True, u.prompt_tokens, u.completion_tokens)

    r = c.completions.create(model="mock/echo", prompt=["a b", "c d e"], n=2, extra_headers=rid("r-cmpl"))
    exp.add("r-cmpl", "mock/echo", "/v1/completions", 200, False, r.usage.prompt_tokens, r.usage.completion_tokens)

    e = c.embeddings.create(model="mock/embed", input=["x y", "z"], extra_headers=rid("r-emb"))
    exp.add("r-emb", "mock/embed", "/v1/embeddings", 200, False, e.usage.prompt_tokens, 0)

    with pytest.raises(openai.BadRequestError):  # refused by validation: still the model it asked for
        c.chat.completions.create(model="mock/echo", messages=msgs, temperature=7, extra_headers=rid("r-400"))
    exp.add("r-400", "mock/echo", chat, 400, False)

    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="nope", messages=msgs, extra_headers=rid("r-404"))
    exp.add("r-404", "nope", chat, 404, False, hash_model="other")


@pytest.fixture
def redis_gateway(
    upstream: Upstream,
    gateway_for: GatewayFor,
    shared_redis: redis.Redis,
    redis_prefix: str,
) -> ServerThread:
    return gateway_for(usage_config(upstream[0].url, REDIS_URL, redis_prefix))


def test_mixed_requests_are_counted_exactly(
    redis_gateway: ServerThread,
    shared_redis: redis.Redis,
    redis_prefix: str,
) -> None:
    exp = Expected()
    run_mix(redis_gateway, exp)
    other = sdk(redis_gateway, OTHER_KEY).chat.completions.create(
        model="mock/echo", messages=[{"role": "user", "content": "b b"}], extra_headers={"x-request-id": "r-b"}
    )
    with pytest.raises(openai.PermissionDeniedError):  # team-b may use mock/* only
        sdk(redis_gateway, OTHER_KEY).chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.AuthenticationError):
        sdk(redis_gateway, "sk-wrong").chat.completions.create(
            model="mock/echo", messages=[{"role": "user", "content": "x"}]
        )

    want = exp.hash()
    assert wait_until(lambda: hashes(shared_redis, redis_prefix, "team-a").get("requests") == want["requests"])
    assert wait_until(lambda: hashes(shared_redis, redis_prefix, "team-b").get("requests") == 2)
    assert hashes(shared_redis, redis_prefix, "team-a") == want
    team_b = hashes(shared_redis, redis_prefix, "team-b")
    assert team_b["total_tokens"] == other.usage.total_tokens and team_b["openai/gpt-4o-mini|errors"] == 1

    entries = [f for _id, f in shared_redis.xrange(f"{redis_prefix}log")]
    by_id = {e["id"]: e for e in entries}
    assert len(entries) == len(by_id) == len(exp.log) + 2  # one each; the unauthenticated one is not there
    for rid, fields in exp.log.items():
        got = by_id[rid]
        assert {k: got[k] for k in fields} == fields, rid
        assert got["key"] == "team-a" and got["estimated"] == "0" and float(got["latency_ms"]) > 0
        assert (got["ttft_ms"] != "") == (fields["stream"] == "1"), rid
    assert by_id["r-su-openai/gpt-4o-mini"]["provider"] == "openai" and by_id["r-404"]["provider"] == ""
    assert by_id["r-b"]["key"] == "team-b"

    # GET /v1/usage reads the same figures back from Redis.
    totals = {f: want[f] for f in FIELDS[:5]} | {"cost_usd": want["cost_micro_usd"] / 1e6}
    assert want["cost_micro_usd"] > 0  # the catalog priced openai/gpt-4o-mini with no config
    with httpx.Client(base_url=redis_gateway.url, timeout=10) as h:
        own = h.get("/v1/usage", headers={"authorization": f"Bearer {CLIENT_KEY}"}).json()
        assert {f: own[f] for f in totals} == totals and own["key"] == "team-a"
        assert own["models"]["openai/gpt-4o-mini"]["requests"] == exp.models["openai/gpt-4o-mini"][0]
        admin = h.get("/v1/usage", params={"key": "team-a"}, headers={"authorization": f"Bearer {ADMIN_KEY}"})
        # The key's own read just above is a recorded request too, written whenever the buffer flushes.
        got = admin.json()
        assert admin.status_code == 200 and got["requests"] in (totals["requests"], totals["requests"] + 1)
        assert {f: got[f] for f in totals if f != "requests"} == {f: v for f, v in totals.items() if f != "requests"}
        denied = h.get("/v1/usage", params={"key": "team-a"}, headers={"authorization": f"Bearer {OTHER_KEY}"})
        assert denied.status_code == 403 and denied.json()["error"]["type"] == "permission_error"
        ready = h.get("/readyz").json()
        assert ready["usage"]["kind"] == "redis" and ready["usage"]["reachable"] is True

        # /metrics (no auth) tells the same story.
        text = h.get("/metrics").text
    samples = [s for fam in text_string_to_metric_families(text) for s in fam.samples]

    def total(name: str, **labels: str) -> float:
        return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())

    # The metrics also count the usage read above (every request with a valid key is recorded).
    assert total("switchyard_requests_total", key="team-a", endpoint="/v1/usage") == 1
    assert total("switchyard_requests_total", key="team-a") == want["requests"] + 1
    assert total("switchyard_requests_total", key="team-a", status="404", model="other") == 1  # never routed
    # The model it may not use, and the usage read of another key above.
    assert total("switchyard_requests_total", key="team-b", status="403", endpoint="/v1/chat/completions") == 1
    assert total("switchyard_requests_total", key="team-b", status="403", endpoint="/v1/usage") == 1
    assert total("switchyard_requests_total", key="team-a", status="400", model="mock/echo") == 1
    assert total("switchyard_in_flight_requests") == 0
    assert total("switchyard_requests_total", key="unauthenticated", status="401") == 1
    assert total("switchyard_tokens_total", key="team-a", kind="prompt") == want["prompt_tokens"]
    assert total("switchyard_tokens_total", key="team-a", kind="completion") == want["completion_tokens"]
    assert total("switchyard_time_to_first_token_seconds_count") == 4  # team-a's four streams
    assert total("switchyard_request_duration_seconds_count", stream="true") == 4


def test_a_rejected_request_is_recorded_under_the_model_it_asked_for(
    redis_gateway: ServerThread,
    shared_redis: redis.Redis,
    redis_prefix: str,
) -> None:
    with pytest.raises(openai.BadRequestError):
        sdk(redis_gateway).chat.completions.create(
            model="mock/echo", messages=[{"role": "user", "content": "x"}], temperature=7, stream=True
        )
    assert wait_until(lambda: hashes(shared_redis, redis_prefix, "team-a").get("requests") == 1)
    (entry,) = [f for _id, f in shared_redis.xrange(f"{redis_prefix}log")]
    assert (entry["model"], entry["status"], entry["stream"]) == ("mock/echo", "400", "1")
    assert hashes(shared_redis, redis_prefix, "team-a")["mock/echo|errors"] == 1


def test_redis_outage_mid_load_loses_nothing_and_counts_once(
    tmp_path: Path, gateway_for: GatewayFor, redis_prefix: str
) -> None:
    # An append-only file with fsync on every write: what was written before the stop survives it.
    server = RedisProcess(tmp_path, extra=("--appendonly", "yes", "--appendfsync", "always")).start()
    try:
        gw = gateway_for(usage_config(None, server.url, redis_prefix))
        c = sdk(gw)
        total = 60
        done: list[str] = []
        errors: list[BaseException] = []

        def load() -> None:
            try:
                for i in range(total):
                    rid = f"out-{i}"
                    body = {"model": "mock/echo", "messages": [{"role": "user", "content": "w " * (i % 5 + 1)}]}
                    if i % 3 == 0:
                        list(c.chat.completions.create(**body, stream=True, extra_headers={"x-request-id": rid}))
                    else:
                        c.chat.completions.create(**body, extra_headers={"x-request-id": rid})
                    done.append(rid)
            except BaseException as e:
                errors.append(e)

        sender = threading.Thread(target=load, daemon=True)
        sender.start()
        assert wait_until(lambda: len(done) >= 15 or bool(errors))
        server.stop()
        assert wait_until(lambda: len(done) >= 40 or bool(errors))
        ready = httpx.get(gw.url + "/readyz", timeout=10)
        assert ready.status_code == 200  # an unreachable usage store does not take the gateway out
        server.start()  # the same port
        sender.join(timeout=60)
        assert not errors and len(done) == total  # every request succeeded throughout

        r = server.client()
        assert wait_until(lambda: hashes(r, redis_prefix, "team-a").get("requests") == total)
        assert sorted(f["id"] for _id, f in r.xrange(f"{redis_prefix}log")) == sorted(done)  # each exactly once
        assert hashes(r, redis_prefix, "team-a")["requests"] == total

        def usage_status() -> dict[str, Any]:
            return httpx.get(gw.url + "/readyz", timeout=10).json()["usage"]

        # A batch Redis applied while the connection dropped stays counted as buffered until the
        # writer's retry confirms it (its guard makes the retry a no-op): wait for that, then check.
        assert wait_until(lambda: usage_status()["buffered"] == 0)
        status = usage_status()
        assert status["buffered"] == 0 and status["dropped"] == 0 and status["reachable"] is True
        r.close()
    finally:
        server.stop()


def test_a_hung_redis_does_not_slow_requests(gateway_for: GatewayFor, redis_prefix: str) -> None:
    with SilentListener() as silent:
        gw = gateway_for(usage_config(None, silent.url, redis_prefix))
        c = sdk(gw, timeout=10)  # generous: a request waiting on Redis would take the socket timeout, or hang
        n = 20
        for i in range(n):
            r = c.chat.completions.create(model="mock/echo", messages=[{"role": "user", "content": f"q {i}"}])
            assert r.choices[0].message.content == f"q {i}"
        with httpx.Client(base_url=gw.url, timeout=10) as h:
            assert wait_until(lambda: h.get("/readyz").json()["usage"]["buffered"] == n)
            ready = h.get("/readyz")
            assert ready.status_code == 200 and ready.json()["usage"]["dropped"] == 0
            usage = h.get("/v1/usage", headers={"authorization": f"Bearer {CLIENT_KEY}"})
            assert usage.status_code == 503 and usage.json()["error"]["code"] == "usage_store_unavailable"
            # The usage read itself is a request with a valid key: recorded and buffered too.
            assert wait_until(lambda: "switchyard_usage_buffered_records 21.0" in h.get("/metrics").text)


# -- two workers -------------------------------------------------------------------------------------
def _per_pid_requests(prom_dir: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for f in prom_dir.glob("counter_*.db"):
        pid = f.stem.rsplit("_", 1)[1]
        out[pid] = sum(
            value
            for key, value, _ts, _pos in MmapedDict.read_all_values_from_file(str(f))
            if key.startswith('["switchyard_requests"')
        )
    return out


def test_two_workers_metrics_add_up(tmp_path: Path) -> None:
    port = free_port()
    cfg = base_config(None)
    cfg["server"] = {"access_log": False, "shutdown_grace": 1}
    path = tmp_path / "switchyard.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    prom_dir = tmp_path / "prom"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(prom_dir)}
    env.pop("SWITCHYARD_CONFIG", None)
    args = ["serve", "--config", str(path), "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: _healthy(url), timeout=30, step=0.1), "the gateway did not start"
        sent = 0

        def burst(k: int) -> None:
            def one(i: int) -> None:
                # A fresh connection each: the kernel spreads them over both workers' accept queues.
                with httpx.Client(timeout=10) as h:
                    r = h.post(
                        url + "/v1/chat/completions",
                        headers={"authorization": f"Bearer {CLIENT_KEY}"},
                        json={"model": "mock/echo", "messages": [{"role": "user", "content": f"m {i}"}]},
                    )
                    assert r.status_code == 200

            threads = [threading.Thread(target=one, args=(i,)) for i in range(k)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)

        for _ in range(10):  # until both workers have served some (bounded)
            burst(16)
            sent += 16
            if sum(1 for v in _per_pid_requests(prom_dir).values() if v > 0) >= 2:
                break
        # A request is counted just after its answer is sent: wait for the last ones.
        assert wait_until(lambda: sum(_per_pid_requests(prom_dir).values()) == sent)
        per_pid = _per_pid_requests(prom_dir)
        assert sum(1 for v in per_pid.values() if v > 0) == 2, per_pid
        for _ in range(6):  # whichever worker answers the scrape reports the sum
            with httpx.Client(timeout=10) as h:
                text = h.get(url + "/metrics").text
            counted = sum(
                s.value
                for fam in text_string_to_metric_families(text)
                for s in fam.samples
                if s.name == "switchyard_requests_total" and s.labels["key"] == "team-a"
            )
            assert counted == sent
            assert "switchyard_in_flight_requests 0.0" in text  # livesum over the live workers
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    # Clean worker exits took their live gauges out of the directory.
    assert not list(prom_dir.glob("gauge_live*")), list(prom_dir.iterdir())


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
