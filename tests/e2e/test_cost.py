"""Cost and budgets through the running gateway (README "Model catalog, cost and budgets").

Requests with known upstream usage give exactly the expected micro-dollars in the usage record, the
day hashes, the log stream, ``GET /v1/usage`` and the metric; cached and cache-write tokens are priced
as the providers document; the catalog answers ``GET /v1/models/{id}`` with no config; a budget turns
into 429 ``insufficient_quota``; and 20 concurrent requests on two gateway processes sharing Redis never
overspend their budget by more than one reservation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.wire.asgi import Receive, Scope, Send, answer_lifespan, read_body, send_json
from simulators.server import MockUpstream
from tests.e2e.conftest import ADMIN_KEY, CLIENT_KEY, base_config
from tests.support import wait_until
from tests.support.redis import REDIS_URL
from tests.support.servers import ServerThread, free_port

# mock/echo's configured prices (USD per million tokens), odd enough that every request rounds.
IN_PRICE, OUT_PRICE = "1.234567", "7.654321"
IN_PICO, OUT_PICO = 1_234_567, 7_654_321


def micro(p: int, c: int, in_pico: int = IN_PICO, out_pico: int = OUT_PICO) -> int:
    """What the gateway must record: the exact pico-dollars, rounded half up to micro-dollars, once."""
    return (p * in_pico + c * out_pico + 500_000) // 1_000_000


def sdk(gw: ServerThread, key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=10)


def metric(gw: ServerThread, name: str, **labels: str) -> float:
    text = httpx.get(gw.url + "/metrics", timeout=10).text
    return sum(
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def priced_config(redis_prefix: str, **extra: Any) -> dict[str, Any]:
    cfg = base_config(
        None,
        usage={"redis_url": REDIS_URL, "prefix": redis_prefix, "flush_interval": 0.02},
        models=[
            {"name": "mock/echo", "context_window": 4096, "pricing": {"input": IN_PRICE, "output": OUT_PRICE}},
            {"name": "mock/embed"},
        ],
    )
    cfg.update(extra)
    return cfg


def test_n_requests_cost_exactly_the_same_everywhere(
    gateway_for: Callable[[dict[str, Any]], ServerThread],
    shared_redis: redis.Redis,
    redis_prefix: str,
) -> None:
    gw = gateway_for(priced_config(redis_prefix))
    c = sdk(gw)
    want: dict[str, int] = {}
    for i in range(24):
        words = " ".join(f"w{j}" for j in range(i % 7 + 1))
        rid = f"r-{i}"
        msgs = [{"role": "system", "content": "be " * (i % 3)}, {"role": "user", "content": words}]
        if i % 4 == 3:
            chunks = list(
                c.chat.completions.create(
                    model="mock/echo",
                    messages=msgs,
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_headers={"x-request-id": rid},
                )
            )
            u = chunks[-1].usage
        elif i % 4 == 2:
            r = c.completions.create(model="mock/echo", prompt=words, n=2, extra_headers={"x-request-id": rid})
            u = r.usage
        else:
            r = c.chat.completions.create(model="mock/echo", messages=msgs, extra_headers={"x-request-id": rid})
            u = r.usage
        assert u is not None and u.prompt_tokens > 0 and u.completion_tokens > 0
        want[rid] = micro(u.prompt_tokens, u.completion_tokens)
    # One request of a model with no price: recorded at cost 0, unpriced, and counted for ops.
    c.embeddings.create(model="mock/embed", input="x y z", extra_headers={"x-request-id": "r-emb"})
    total = sum(want.values())
    assert total > 0 and len(set(want.values())) > 3

    # The day hashes.
    def hash_cost() -> dict[str, str]:
        out: dict[str, str] = {}
        for name in shared_redis.scan_iter(match=f"{redis_prefix}usage:team-a:*"):
            out.update(shared_redis.hgetall(name))
        return out

    assert wait_until(lambda: hash_cost().get("requests") == "25")
    h = hash_cost()
    assert int(h["cost_micro_usd"]) == total and int(h["mock/echo|cost_micro_usd"]) == total
    assert h["mock/embed|cost_micro_usd"] == "0"

    # The log stream: each record's cost to the micro-dollar, as an exact decimal string.
    entries = {f["id"]: f for _, f in shared_redis.xrange(f"{redis_prefix}log")}
    for rid, cost in want.items():
        assert entries[rid]["cost_usd"] == f"0.{cost:06d}", rid
        assert entries[rid]["priced"] == "1" and entries[rid]["cache_read_tokens"] == "0"
    assert entries["r-emb"]["cost_usd"] == "0.000000" and entries["r-emb"]["priced"] == "0"

    # GET /v1/usage.
    body = httpx.get(gw.url + "/v1/usage", headers={"authorization": f"Bearer {CLIENT_KEY}"}, timeout=10).json()
    assert body["cost_usd"] == total / 1e6 and body["models"]["mock/echo"]["cost_usd"] == total / 1e6
    assert body["models"]["mock/embed"]["cost_usd"] == 0

    # The metrics.
    spent = metric(gw, "switchyard_cost_usd_total", key="team-a", vendor="mock", model="mock/echo")
    assert abs(spent - total / 1e6) < 1e-9
    assert metric(gw, "switchyard_unpriced_requests_total", vendor="mock", model="mock/embed") == 1
    assert metric(gw, "switchyard_unpriced_requests_total", vendor="mock", model="mock/echo") == 0


# -- an upstream that reports prompt-cache tokens ------------------------------------------------
class CachingUpstream:
    """Answers OpenAI chat and Anthropic messages with fixed usage that includes cache tokens."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await answer_lifespan(receive, send)
        body = orjson.loads(await read_body(receive, 1 << 20, None))
        if scope["path"] == "/v1/chat/completions":
            answer = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": 1000,
                    "completion_tokens": 50,
                    "total_tokens": 1050,
                    "prompt_tokens_details": {"cached_tokens": 600},
                },
            }
        else:  # /v1/messages
            answer = {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": "ok"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 100,
                    "cache_creation_input_tokens": 1000,
                    "cache_read_input_tokens": 2000,
                    "output_tokens": 50,
                },
            }
        await send_json(send, 200, orjson.dumps(answer), "up")


@pytest.fixture(scope="module")
def caching_upstream() -> Iterator[ServerThread]:
    with ServerThread(CachingUpstream()) as srv:
        yield srv


def test_cached_and_cache_write_tokens_are_priced_as_documented(
    caching_upstream: ServerThread, gateway_for: Callable[[dict[str, Any]], ServerThread]
) -> None:
    cfg = base_config(None)
    cfg["providers"]["oa"] = {"kind": "openai", "base_url": caching_upstream.url + "/v1", "api_key": "x"}
    cfg["providers"]["an"] = {"kind": "anthropic", "base_url": caching_upstream.url, "api_key": "x"}
    gw = gateway_for(cfg)
    c = sdk(gw)
    msgs = [{"role": "user", "content": "hi"}]
    c.chat.completions.create(model="oa/gpt-4o-2024-08-06", messages=msgs, extra_headers={"x-request-id": "oa"})
    c.chat.completions.create(model="an/claude-sonnet-4-5", messages=msgs, extra_headers={"x-request-id": "an"})
    r = httpx.post(
        gw.url + "/v1/messages",
        headers={"x-api-key": CLIENT_KEY, "x-request-id": "an-native"},
        json={"model": "an/claude-sonnet-4-5-20250929", "max_tokens": 100, "messages": msgs},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    recs = {rec.id: rec for rec in gw.app.store.log}
    # gpt-4o: 400 x 2.50 + 600 cached x 1.25 + 50 x 10.00 = 1000 + 750 + 500 micro-dollars.
    assert (recs["oa"].cost_micro_usd, recs["oa"].priced, recs["oa"].cache_read_tokens) == (2_250, True, 600)
    # claude-sonnet-4-5: 100 x 3 + 1000 writes x 3.75 + 2000 reads x 0.30 + 50 x 15 = 300 + 3750 + 600 + 750.
    for rid in ("an", "an-native"):
        rec = recs[rid]
        assert rec.prompt_tokens == 3_100 and rec.completion_tokens == 50, rid
        assert (rec.cache_read_tokens, rec.cache_write_tokens) == (2_000, 1_000), rid
        assert rec.cost_micro_usd == 5_400, rid
    usage = httpx.get(gw.url + "/v1/usage", headers={"authorization": f"Bearer {CLIENT_KEY}"}, timeout=10).json()
    assert usage["cost_usd"] == (2_250 + 2 * 5_400) / 1e6


def test_models_route_shows_the_catalog_facts_with_no_config(
    gateway_for: Callable[[dict[str, Any]], ServerThread],
) -> None:
    gw = gateway_for(
        {
            "keys": [{"name": "k", "key": CLIENT_KEY}],
            "providers": {"openai": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}, "mock": {"kind": "mock"}},
        }
    )
    h = {"authorization": f"Bearer {CLIENT_KEY}"}
    m = httpx.get(gw.url + "/v1/models/openai/gpt-4o", headers=h, timeout=10).json()
    assert m["id"] == "openai/gpt-4o" and m["object"] == "model"
    assert (m["context_window"], m["max_output_tokens"], m["tokenizer"]) == (128_000, 16_384, "o200k_base")
    assert m["pricing"] == {"input": 2.5, "cached_input": 1.25, "cache_write": None, "output": 10.0}
    assert m["pricing_source"]["url"].startswith("https://developers.openai.com/")
    # The OpenAI SDK reads it as a Model.
    assert sdk(gw).models.retrieve("openai/gpt-4o").id == "openai/gpt-4o"
    bare = httpx.get(gw.url + "/v1/models/mock/echo", headers=h, timeout=10).json()
    assert "pricing" not in bare and "context_window" not in bare


def test_a_budget_refuses_with_insufficient_quota(
    gateway_for: Callable[[dict[str, Any]], ServerThread],
) -> None:
    cfg = base_config(None, models=[{"name": "mock/echo", "pricing": {"input": 1000, "output": 1000}}])
    cfg["keys"][0]["limits"] = {"budget_usd": {"day": "0.05"}}  # 50,000 micro-dollars
    gw = gateway_for(cfg)
    body = {"model": "mock/echo", "messages": [{"role": "user", "content": "a b c"}], "max_tokens": 10}
    raw = sdk(gw).chat.completions.with_raw_response.create(**body)
    assert raw.headers["x-ratelimit-limit-budget"] == "0.05"
    remaining = float(raw.headers["x-ratelimit-remaining-budget"])
    assert 0 < remaining < 0.05
    for _ in range(20):
        try:
            sdk(gw).chat.completions.create(**body)
        except openai.RateLimitError as e:
            assert e.code == "insufficient_quota" and e.type == "insufficient_quota"
            assert int(e.response.headers["retry-after"]) >= 1
            assert e.response.headers["x-ratelimit-limit-budget"] == "0.05"
            break
    else:
        pytest.fail("the budget never refused")
    # Anthropic's shape on the Messages route.
    r = httpx.post(
        gw.url + "/v1/messages",
        headers={"x-api-key": CLIENT_KEY},
        json={"model": "mock/echo", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    # Another key has no budget.
    assert sdk(gw, ADMIN_KEY).chat.completions.create(**body).choices


# -- 20 concurrent requests on two processes ------------------------------------------------------
@pytest.fixture
def slow_upstream() -> Iterator[ServerThread]:
    # 300 ms per answer, every answer exactly 20 words (cut by max_tokens): requests overlap.
    with ServerThread(MockUpstream("openai", latency_ms=300, chunks=20)) as srv:
        yield srv


def _start(config: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SWITCHYARD_CONFIG", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    args = ["serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return proc, f"http://127.0.0.1:{port}"


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_twenty_concurrent_requests_on_two_processes_never_overspend(
    slow_upstream: ServerThread,
    shared_redis: redis.Redis,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    budget_micro = 100_000  # $0.10
    cfg = {
        "server": {"access_log": False, "shutdown_grace": 1},
        "keys": [{"name": "team-a", "key": CLIENT_KEY, "limits": {"budget_usd": {"day": "0.1"}}}],
        "providers": {"up": {"kind": "openai", "base_url": slow_upstream.url + "/v1", "api_key": "x"}},
        # $100 per million input tokens, $1000 per million output: one answer costs about 20,000 micro-dollars.
        "models": [{"name": "up/slow", "pricing": {"input": 100, "output": 1000}}],
        "usage": {"redis_url": REDIS_URL, "prefix": redis_prefix, "flush_interval": 0.02},
    }
    path = tmp_path / "switchyard.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    procs = [_start(path), _start(path)]
    body = {"model": "up/slow", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
    reserve = (len(orjson.dumps(body)) // 4) * 100 + 20 * 1000  # the prompt estimate x input + budget x output
    results: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()
    try:
        for _, url in procs:
            assert wait_until(lambda url=url: _healthy(url), timeout=60, step=0.1), "a gateway did not start"
        start = threading.Barrier(20)

        def one(url: str) -> None:
            with httpx.Client(timeout=30) as h:
                start.wait()
                r = h.post(
                    url + "/v1/chat/completions",
                    headers={"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"},
                    content=orjson.dumps(body),  # the bytes the reservation's prompt estimate is made from
                )
            with lock:
                results.append((r.status_code, r.json()))

        threads = [threading.Thread(target=one, args=(procs[i % 2][1],)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(results) == 20
        ok = [b for s, b in results if s == 200]
        refused = [b for s, b in results if s == 429]
        assert len(ok) + len(refused) == 20
        assert ok and refused, [s for s, _ in results]
        assert all(b["error"]["code"] == "insufficient_quota" for b in refused)
        spent = sum(micro(b["usage"]["prompt_tokens"], b["usage"]["completion_tokens"], 100_000_000, 1_000_000_000)
                    for b in ok)  # fmt: skip
        assert spent <= budget_micro + reserve  # the promise
        # Every reservation is about 22,000 micro-dollars and the real cost about 20,100: four fit.
        assert len(ok) == budget_micro // reserve, (len(ok), reserve)

        # The usage hashes say the same, and the budget counter settles to exactly what was spent.
        def hashed() -> dict[str, str]:
            out: dict[str, str] = {}
            for name in shared_redis.scan_iter(match=f"{redis_prefix}usage:team-a:*"):
                out.update(shared_redis.hgetall(name))
            return out

        assert wait_until(lambda: hashed().get("requests") == "20", timeout=10)
        assert int(hashed()["cost_micro_usd"]) == spent
        bud = f"{redis_prefix}rl:{{team-a}}:bud"
        assert wait_until(lambda: int(shared_redis.hget(bud, "du") or -1) == spent, timeout=10)
        assert int(shared_redis.hget(bud, "mu") or -1) == spent
    finally:
        for p, _ in procs:
            p.terminate()
        for p, _ in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
