"""Issue 19 #1 and #11: the built-in mock model builds bounded answers, off the event loop when
they are large, and refuses (400) what it cannot answer instead of crashing (500)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from simulators.bounds import MAX_DIMENSIONS, MAX_EMBEDDING_VALUES, MAX_OUTPUT_CHARS
from tests.e2e.conftest import CLIENT_KEY
from tests.support.hardening import Served

DEMO = {"authorization": "Bearer sk-switchyard-demo"}
H = {"authorization": f"Bearer {CLIENT_KEY}"}


def test_the_mock_bounds_what_it_builds_under_a_memory_cap(tmp_path):
    """``dimensions: 2**63`` drove a worker to 23 GB; ``10000000`` built 230 MB on the event loop;
    ``n`` times a long prompt had no bound. The gateway runs under a 1.5 GB cap here."""
    with Served(None, tmp_path) as gw, httpx.Client(base_url=gw.url, headers=DEMO, timeout=60) as c:
        for dims in (2**63, 10_000_000, MAX_DIMENSIONS + 1):
            t = time.monotonic()
            r = c.post("/v1/embeddings", json={"model": "mock/embed", "input": "x", "dimensions": dims})
            assert r.status_code == 400 and r.json()["error"]["param"] == "dimensions", r.text
            assert time.monotonic() - t < 2
        r = c.post("/v1/embeddings", json={"model": "mock/embed", "input": "x", "dimensions": MAX_DIMENSIONS})
        assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == MAX_DIMENSIONS
        too_many = MAX_EMBEDDING_VALUES // MAX_DIMENSIONS + 1
        r = c.post(
            "/v1/embeddings", json={"model": "mock/embed", "input": ["x"] * too_many, "dimensions": MAX_DIMENSIONS}
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "input"
        prompt = "word " * 200_000  # 1 MB echoed 128 times was 128 MB of answer
        r = c.post("/v1/completions", json={"model": "mock/big", "prompt": prompt, "n": 128, "max_tokens": 10**9})
        assert r.status_code == 200
        text = sum(len(ch["text"]) for ch in r.json()["choices"])
        assert text <= MAX_OUTPUT_CHARS and len(r.content) < 8 * MAX_OUTPUT_CHARS
        r = c.post(
            "/v1/chat/completions",
            json={
                "model": "mock/big",  # no context window: only the mock's own bounds apply
                "messages": [{"role": "user", "content": "w" * 2_000_000}],  # one huge "token"
                "n": 128,
                "logprobs": True,
                "top_logprobs": 20,
            },
        )
        assert r.status_code == 200 and len(r.content) < 64 * MAX_OUTPUT_CHARS
        assert gw.alive() and gw.rss() < 1024 * 1024 * 1024


def test_a_large_mock_answer_is_built_off_the_event_loop(tmp_path):
    """The largest embeddings answer allowed (a million values) must not stall other requests."""
    with Served(None, tmp_path) as gw:
        latencies: list[float] = []
        done = threading.Event()

        def probe() -> None:
            with httpx.Client(base_url=gw.url, timeout=30) as c:
                while not done.is_set():
                    t = time.monotonic()
                    assert c.get("/healthz").status_code == 200
                    latencies.append(time.monotonic() - t)
                    time.sleep(0.01)

        t = threading.Thread(target=probe, daemon=True)
        t.start()
        time.sleep(0.3)
        items = MAX_EMBEDDING_VALUES // 4096
        body = {"model": "mock/embed", "input": [f"text {i}" for i in range(items)], "dimensions": 4096}
        r = httpx.post(gw.url + "/v1/embeddings", json=body, headers=DEMO, timeout=120)
        done.set()
        t.join(30)
        assert r.status_code == 200 and len(r.json()["data"]) == items
        # The simulator's own work ran in a thread: no pause as long as building it (the gateway
        # still parses and writes the answer on the loop, as it would any upstream's).
        assert len(latencies) > 5 and max(latencies) < 0.6, max(latencies)


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/completions", {"prompt": "a b", "max_completion_tokens": "x"}),
        ("/v1/completions", {"prompt": "a b", "logprobs": True}),
        ("/v1/completions", {"prompt": "a b", "n": 2, "best_of": 2, "echo": "yes"}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "text", "text": {"o": 1}}]}]}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a"}], "stream_options": None}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a"}], "max_completion_tokens": 2.0}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}], "stop": ["a", "b"]}),
        ("/v1/embeddings", {"input": [[1, 2], [3]], "dimensions": 3.0}),
    ],
)
def test_the_mock_never_crashes_on_fields_the_gateway_does_not_check(gateway, path, body):
    r = httpx.post(gateway.url + path, json={"model": "mock/echo", **body}, headers=H, timeout=10)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
