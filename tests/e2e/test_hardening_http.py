"""Issue 19, the HTTP layer of a real ``switchyard serve`` (gateway/wire/http.py): a bounded head
(431), head and body deadlines (408) with slots taken only once a body is in, errors in OpenAI's
shape for bytes that are no HTTP, and a rolling reload that resets no connection."""

from __future__ import annotations

import signal
import socket
import threading
import time

import httpx
import orjson
import pytest

from tests.support.hardening import Hammer, Served, raw_request, read_all, split_response

KEY = "sk-hardening-http-1"
AUTH = {"authorization": f"Bearer {KEY}"}
CHAT = {"model": "mock/echo", "messages": [{"role": "user", "content": "hello there"}]}


def config(**server: object) -> dict:
    return {
        "server": {"access_log": False, **server},
        "keys": [{"name": "a", "key": KEY}],
        "providers": {"mock": {"kind": "mock"}},
        "models": [{"name": "mock/echo"}],
    }


def openai_error(body: bytes) -> dict:
    err = orjson.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


def test_a_64_mib_header_is_refused_at_64_kib_without_stalling_the_worker(tmp_path):
    """Issue 19 #3: an unterminated 64 MiB header on a raw socket: 431 once 64 KiB are in, in
    OpenAI's shape, at a small CPU cost (httptools' parsing of it is quadratic when unbounded)."""
    with Served(None, tmp_path) as gw:  # the embedded default: no key needed to try this
        cpu = gw.cpu_seconds()
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=20)
        sent = [0]

        def flood() -> None:
            try:
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: ")
                chunk = b"a" * (1 << 20)
                for _ in range(64):
                    s.sendall(chunk)
                    sent[0] += len(chunk)
            except OSError:
                pass  # the gateway stopped reading: expected

        t = threading.Thread(target=flood, daemon=True)
        t0 = time.monotonic()
        t.start()
        raw = read_all(s)
        elapsed = time.monotonic() - t0
        t.join(20)
        s.close()
        status, headers, body = split_response(raw)
        assert status == 431, raw[:300]
        assert headers["content-type"] == "application/json" and headers["connection"] == "close"
        assert openai_error(body)["code"] == "request_header_fields_too_large"
        assert elapsed < 5 and sent[0] < 32 << 20  # refused long before the flood ended
        assert gw.cpu_seconds() - cpu < 1.5
        r = httpx.post(
            gw.url + "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-switchyard-demo"}
        )
        assert r.status_code == 200 and gw.alive()


def test_a_head_just_under_the_bound_is_served(tmp_path):
    with Served(config(), tmp_path) as gw:
        pad = "p" * (60 * 1024)
        r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers={**AUTH, "x-pad": pad})
        assert r.status_code == 200
        r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers={**AUTH, "x-pad": pad + "p" * 8192})
        assert r.status_code == 431 and r.json()["error"]["code"] == "request_header_fields_too_large"


def test_malformed_requests_are_answered_in_openai_shape(tmp_path):
    """Issue 19 #14: uvicorn's plain-text "Invalid HTTP request received." becomes OpenAI's shape."""
    with Served(config(), tmp_path) as gw:
        for junk in (b"GARBAGE\r\n\r\n", b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: x\r\n\r\n"):
            status, headers, body = split_response(raw_request(gw.port, junk))
            assert status == 400 and headers["content-type"] == "application/json"
            err = openai_error(body)
            assert err["type"] == "invalid_request_error" and err["code"] == "invalid_http_request"


def test_slow_heads_and_bodies_get_408_and_hold_no_slot(tmp_path):
    """Issue 19 #4: a head or a body that stops arriving is answered 408 after its timeout, a silent
    connection is closed, and slow bodies hold no concurrency slot while they trickle in."""
    with Served(config(header_timeout=1, body_timeout=1, max_concurrent_requests=2), tmp_path) as gw:
        silent = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        slow_head = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        slow_head.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        bodies = []
        for _ in range(4):  # twice the slots
            b = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            b.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + KEY.encode()
                + b'\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model": '
            )
            bodies.append(b)
        time.sleep(0.3)
        # Every slot is free: the slow bodies are still being read.
        with httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as c:
            assert [c.post("/v1/chat/completions", json=CHAT).status_code for _ in range(3)] == [200] * 3
        t0 = time.monotonic()
        status, _, body = split_response(read_all(slow_head))
        assert status == 408 and openai_error(body)["type"] == "timeout_error"
        for b in bodies:
            status, headers, body = split_response(read_all(b))
            assert status == 408 and headers["connection"] == "close"
            assert openai_error(body)["code"] == "request_timeout"
        assert read_all(silent) == b""  # closed without an answer
        assert time.monotonic() - t0 < 5
        usage = httpx.get(gw.url + "/v1/usage", headers=AUTH).json()
        assert usage["requests"] == 7 and usage["errors"] == 4  # the four bodies, recorded as 408


def test_a_body_timeout_on_the_messages_route_answers_in_anthropic_shape(tmp_path):
    with Served(config(body_timeout=0.5), tmp_path) as gw:
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        s.sendall(
            b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: " + KEY.encode() + b"\r\nContent-Length: 50\r\n\r\n{"
        )
        status, _, body = split_response(read_all(s))
        assert status == 408 and orjson.loads(body)["type"] == "error"


@pytest.mark.parametrize("keep_alive", [True, False])
def test_a_rolling_reload_with_two_workers_resets_no_connection(tmp_path, keep_alive):
    """Issue 19 #13: cheap clients hammer two workers (kept-alive connections that also idle a
    little, as in a pool, or a new connection per request) with chat requests through three SIGHUP
    rolling restarts: every request is answered, none reset."""
    body = orjson.dumps(CHAT)
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (KEY.encode(), len(body), body)
    )
    with Served(config(drain_delay=0.5, shutdown_grace=10), tmp_path, workers=2, memory=None) as gw:
        with Hammer(gw.port, connections=48, keep_alive=keep_alive, request=request, think=0.01) as hammer:
            for _ in range(3):
                time.sleep(1.0)
                before = set(gw.worker_pids())
                gw.p.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and before & set(gw.worker_pids()):
                    time.sleep(0.2)
                assert not before & set(gw.worker_pids()), "the old workers were not retired"
            time.sleep(1.0)
        assert hammer.ok > 1000
        assert not hammer.errors, (len(hammer.errors), hammer.errors[:5])
