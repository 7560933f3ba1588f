"""UpstreamClient (gateway/wire/upstream.py), black box, against raw servers on loopback scripted byte by byte.

Each server is an ``asyncio.start_server`` on a free port whose handler writes exact bytes, so the framing
(content-length, chunked, close-delimited, 1xx, garbage, stalls) is under the test's control; the server
counts the TCP connections it accepted, which is how keep-alive reuse is observed.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import os
import socket
import ssl
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gateway.errors import GatewayError
from gateway.wire import connection, upstream
from gateway.wire.types import UpstreamRequest
from gateway.wire.upstream import UpstreamClient, UpstreamResponse

T = TypeVar("T")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


# ----- the scripted server ---------------------------------------------------------------------------


@dataclass
class _Req:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name]

    def get(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None


async def _read_request(reader: asyncio.StreamReader) -> _Req | None:
    """One request off the wire (content-length or chunked body), or None when the client closed first."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ")
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:] if line)]
    req = _Req(method, target, headers, b"")
    if (req.get("transfer-encoding") or "").lower() == "chunked":
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            assert await reader.readexactly(2) == b"\r\n"
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
            pass
        req.body = b"".join(parts)
    elif length := req.get("content-length"):
        req.body = await reader.readexactly(int(length))
    return req


class _Server:
    """A loopback server running ``handler`` per connection; ``connections`` counts accepted ones."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._tasks: set[asyncio.Task[Any]] = set()
        self.connections = 0
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handler(reader, writer)
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
            asyncio.CancelledError,
        ):
            pass  # a cancelled handler ends quietly (3.11's StreamReaderProtocol logs a cancelled task)
        finally:
            writer.close()

    async def __aenter__(self) -> _Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


def _answer(respond: Callable[[_Req], bytes], *, close_after: bool = False) -> Handler:
    """A keep-alive handler: each request gets ``respond(req)``'s bytes; close after the first if asked."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (req := await _read_request(reader)) is not None:
            writer.write(respond(req))
            await writer.drain()
            if close_after:
                return

    return handler


def _response(body: bytes = b"", *headers: str, status: str = "200 OK", version: str = "HTTP/1.1") -> bytes:
    return f"{version} {status}\r\n{''.join(h + chr(13) + chr(10) for h in headers)}\r\n".encode() + body


def _ok(body: bytes = b"ok", *headers: str) -> bytes:
    return _response(body, f"content-length: {len(body)}", *headers)


def _chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


# ----- the client side -------------------------------------------------------------------------------


def _run(coro: Coroutine[Any, Any, T], timeout: float = 5.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@asynccontextmanager
async def _client() -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient()
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def _send(
    client: UpstreamClient,
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    stream: AsyncIterator[bytes] | None = None,
    read_timeout: float = 2.0,
    max_duration: float = 3600.0,
) -> UpstreamResponse:
    req = UpstreamRequest(method, url, headers or {}, body)
    return await client.send(req, "p", 2.0, read_timeout, body=stream, max_duration=max_duration)


async def _get(client: UpstreamClient, url: str) -> bytes:
    resp = await _send(client, url)
    assert resp.status == 200
    return await resp.read()


async def _drain(resp: UpstreamResponse) -> bytes:
    return b"".join([piece async for piece in resp.chunks()])


async def _body(resp: UpstreamResponse, how: str) -> bytes:
    return await resp.read() if how == "read" else await _drain(resp)


async def _fails(aw: Awaitable[object]) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await aw
    return info.value


async def _sleep_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    await asyncio.sleep(60)


# ----- 1. response framing ---------------------------------------------------------------------------


def test_a_content_length_answer_is_read_whole_with_case_insensitive_headers() -> None:
    """A content-length body comes back whole; headers answer .get() in any case and list via .items()."""

    async def go() -> None:
        async with _Server(_answer(lambda r: _ok(b"hello world", "X-Thing: yes"))) as server, _client() as client:
            resp = await _send(client, server.url + "/")
            assert resp.status == 200
            assert resp.headers.get("x-thing") == resp.headers.get("X-THING") == "yes"
            assert "content-length" in {k.lower() for k, _ in resp.headers.items()}
            assert await resp.read() == b"hello world"

    _run(go())


CHUNKED_WITH_EXTENSIONS = (
    b'5;name=value\r\nhello\r\n1\r\n \r\nA;a;b="c d"\r\nworld12345\r\n1\r\n!\r\n0\r\nx-trailer: t\r\n\r\n'
)


@pytest.mark.parametrize("how", ["read", "chunks"])
def test_a_chunked_answer_with_extensions_and_trailers_is_read_whole(how: str) -> None:
    """Several chunks (extensions, an upper-case hex size, trailers) decode to the exact body either way."""

    async def go() -> None:
        answer = _response(CHUNKED_WITH_EXTENSIONS, "transfer-encoding: chunked")
        async with _Server(_answer(lambda r: answer)) as server, _client() as client:
            resp = await _send(client, server.url + "/")
            assert await _body(resp, how) == b"hello world12345!"

    _run(go())


@pytest.mark.parametrize(("version", "headers"), [("HTTP/1.1", ("connection: close",)), ("HTTP/1.0", ())])
def test_an_answer_ended_by_the_server_closing_is_read_whole(version: str, headers: tuple[str, ...]) -> None:
    """Neither length nor chunked: the body runs to the server's close, and all of it comes back."""
    payload = os.urandom(200_000)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_response(payload, *headers, version=version))
        await writer.drain()

    async def go() -> None:
        async with _Server(handler) as server, _client() as client:
            assert await _get(client, server.url + "/") == payload

    _run(go())


# ----- 2. keep-alive ---------------------------------------------------------------------------------


def test_sequential_requests_reuse_one_connection() -> None:
    """Three requests in a row (content-length, chunked with trailers, content-length) share one TCP connection."""
    answers = iter([_ok(b"one"), _response(CHUNKED_WITH_EXTENSIONS, "transfer-encoding: chunked"), _ok(b"three")])

    async def go() -> None:
        async with _Server(_answer(lambda r: next(answers))) as server, _client() as client:
            assert await _get(client, server.url + "/1") == b"one"
            assert await _get(client, server.url + "/2") == b"hello world12345!"
            assert await _get(client, server.url + "/3") == b"three"
            assert server.connections == 1

    _run(go())


def test_no_body_answers_keep_the_connection() -> None:
    """A 204 without a length and a HEAD answer with one have no body, and the connection stays usable."""

    def respond(req: _Req) -> bytes:
        if req.method == "HEAD":
            return _response(b"", "content-length: 5")
        return _response(b"", status="204 No Content") if req.target == "/204" else _ok(b"after")

    async def go() -> None:
        async with _Server(_answer(respond)) as server, _client() as client:
            resp = await _send(client, server.url + "/204")
            assert resp.status == 204 and await resp.read() == b""
            resp = await _send(client, server.url + "/head", method="HEAD")
            assert resp.status == 200 and await resp.read() == b""
            assert await _get(client, server.url + "/") == b"after"
            assert server.connections == 1

    _run(go())


def test_a_connection_close_answer_is_not_reused() -> None:
    """An answer saying ``connection: close`` retires its connection even if the server keeps it open."""

    async def go() -> None:
        async with _Server(_answer(lambda r: _ok(b"x", "connection: close"))) as server, _client() as client:
            assert await _get(client, server.url + "/") == b"x"
            assert await _get(client, server.url + "/") == b"x"
            assert server.connections == 2

    _run(go())


@pytest.mark.parametrize("together", [True, False], ids=["in-the-same-read", "later"])
def test_bytes_sent_on_an_idle_connection_never_answer_the_next_request(together: bool) -> None:
    """A server's unsolicited parting answer (a 408 on a kept-alive connection), right behind the answer
    or later, retires the connection; the next request goes on a new one and gets its own answer."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = server.connections == 1
        await _read_request(reader)
        parting = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n"
        writer.write(_ok(b"first" if first else b"second") + (parting if first and together else b""))
        await writer.drain()
        if first:
            if not together:
                await asyncio.sleep(0.05)
                writer.write(parting)
                await writer.drain()
            await reader.read()  # keep it open: only the bytes tell

    async def go() -> None:
        async with server, _client() as client:
            assert await _get(client, server.url + "/") == b"first"
            await asyncio.sleep(0.1)
            assert await _get(client, server.url + "/") == b"second"
            assert server.connections == 2

    server = _Server(handler)
    _run(go())


def test_a_response_closed_mid_body_is_not_reused() -> None:
    """close() on a response whose body is still arriving drops its connection; the next request opens another."""

    def respond(req: _Req) -> bytes:
        if req.target == "/partial":  # 1 KB of a 1 MB body, the rest never sent
            return _response(b"z" * 1000, "content-length: 1000000")
        return _ok(b"whole")

    async def go() -> None:
        async with _Server(_answer(respond)) as server, _client() as client:
            resp = await _send(client, server.url + "/partial")
            assert resp.status == 200
            resp.close()
            assert await _get(client, server.url + "/") == b"whole"
            assert server.connections == 2

    _run(go())


# ----- 3. stale pooled connections -------------------------------------------------------------------


def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    """The server closes a kept-alive connection after answering: the next request succeeds on a new one."""

    async def go() -> None:
        async with _Server(_answer(lambda r: _ok(b"fresh"), close_after=True)) as server, _client() as client:
            assert await _get(client, server.url + "/") == b"fresh"
            await asyncio.sleep(0.1)  # the FIN has arrived by now
            assert await _get(client, server.url + "/") == b"fresh"
            assert server.connections == 2

    _run(go())


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_connection_the_server_drops_as_the_next_request_arrives_is_retried(method: str) -> None:
    """The race: the server reads the second request on the kept-alive connection and closes it unanswered;
    the request is sent once more on a new connection (RFC 9112 section 9.3.1). A POST too: nothing of
    an answer came, and the keep-alive race is far likelier than a server that takes a request and dies."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_ok(b"first"))
        await writer.drain()
        if server.connections == 1:
            await _read_request(reader)  # and close without a byte: the keep-alive timeout just fired
        else:
            await _answer(lambda r: _ok(b"again"))(reader, writer)

    async def go() -> None:
        async with server, _client() as client:
            for _ in range(2):
                resp = await _send(client, server.url + "/", method=method, body=b"{}" if method == "POST" else None)
                assert resp.status == 200 and await resp.read() == b"first"
            assert server.connections == 2

    server = _Server(handler)
    _run(go())


def test_a_post_dropped_after_a_while_is_not_sent_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reused connection that closes silently well after a POST went out (a load balancer's idle timeout
    in the middle of a long generation) fails the request: sent again, it would be worked on (and billed)
    twice."""
    monkeypatch.setattr(connection, "_RACE", 0.1)
    posts: list[str] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (req := await _read_request(reader)) is not None:
            posts.append(req.target)
            if req.target == "/slow":
                await asyncio.sleep(0.3)
                return  # closed without a byte of an answer
            writer.write(_ok(b"ok"))
            await writer.drain()

    async def go() -> GatewayError:
        async with _Server(handler) as server, _client() as client:
            resp = await _send(client, server.url + "/fast", method="POST", body=b"{}")
            assert await resp.read() == b"ok"
            return await _fails(_send(client, server.url + "/slow", method="POST", body=b"{}"))

    err = _run(go())
    assert (err.status, err.code) == (502, "upstream_unreachable")
    assert posts == ["/fast", "/slow"]


# ----- 4. request framing ----------------------------------------------------------------------------


def _recording(seen: list[_Req]) -> Handler:
    def respond(req: _Req) -> bytes:
        seen.append(req)
        return _ok(b"{}")

    return _answer(respond)


async def _one_request(
    headers: dict[str, str], body: bytes | None = None, stream: AsyncIterator[bytes] | None = None
) -> tuple[_Req, int]:
    seen: list[_Req] = []
    async with _Server(_recording(seen)) as server, _client() as client:
        resp = await _send(
            client, server.url + "/v1/x?a=1&b=two", method="POST", headers=headers, body=body, stream=stream
        )
        assert resp.status == 200 and await resp.read() == b"{}"
    assert len(seen) == 1
    return seen[0], server.port


def test_the_request_line_host_content_length_and_default_user_agent() -> None:
    """A bytes body goes with its content-length; the path keeps its query; host names the port; UA is ours."""
    req, port = _run(_one_request({"content-type": "application/json"}, b'{"k":1}'))
    assert (req.method, req.target, req.body) == ("POST", "/v1/x?a=1&b=two", b'{"k":1}')
    assert req.all("host") == [f"127.0.0.1:{port}"]
    assert req.all("content-length") == ["7"] and req.get("transfer-encoding") is None
    assert req.all("content-type") == ["application/json"]
    assert req.all("user-agent") == ["switchyard"]


@pytest.mark.parametrize("name", ["User-Agent", "user-agent", "USER-AGENT"])
def test_a_configured_user_agent_in_any_case_is_the_only_one(name: str) -> None:
    """A user agent in the request headers, whatever its case, replaces the gateway's."""
    req, _ = _run(_one_request({name: "acme/1"}, b"{}"))
    assert req.all("user-agent") == ["acme/1"]


async def _pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0.01)
        yield part


def test_a_streamed_body_without_a_length_goes_chunked() -> None:
    """An async-iterable body with no content-length is sent chunked (an empty piece does not end it)."""
    req, _ = _run(_one_request({}, stream=_pieces(b"hello ", b"", b"big ", b"world" * 1000)))
    assert (req.get("transfer-encoding") or "").lower() == "chunked" and req.get("content-length") is None
    assert req.body == b"hello big " + b"world" * 1000


def test_a_streamed_body_with_a_declared_length_keeps_it() -> None:
    """An async-iterable body whose headers declare content-length goes out with it, not chunked."""
    req, _ = _run(_one_request({"content-length": "11"}, stream=_pieces(b"hello", b" ", b"world")))
    assert req.all("content-length") == ["11"] and req.get("transfer-encoding") is None
    assert req.body == b"hello world"


def test_an_upload_answered_before_its_end_stops_and_its_connection_is_not_reused() -> None:
    """The upstream refuses an upload at its head (a 413 on a kept-alive connection): the answer comes back,
    the rest of the body is not sent, and the next request opens a new connection (on the old one the
    upstream would read it as the rest of the body)."""
    produced: list[int] = []

    async def upload() -> AsyncIterator[bytes]:
        for i in range(20):
            produced.append(i)
            await asyncio.sleep(0.02)
            yield b"x" * 1000

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if server.connections == 1:
            await reader.readuntil(b"\r\n\r\n")  # the head only: refused before the body is read
            writer.write(_response(b"too big", "content-length: 7", status="413 Payload Too Large"))
            await writer.drain()
            await reader.read()
        else:
            await _answer(lambda r: _ok(b"fresh"))(reader, writer)

    async def go() -> None:
        async with server, _client() as client:
            resp = await _send(client, server.url + "/upload", method="POST", stream=upload())
            assert resp.status == 413 and await resp.read() == b"too big"
            assert await _get(client, server.url + "/") == b"fresh"
            assert server.connections == 2

    server = _Server(handler)
    _run(go())
    assert len(produced) < 20  # the producer was not drained to its end


# ----- 5. content-encoding ---------------------------------------------------------------------------

PLAIN = b'{"choices": [{"text": "' + b"some fairly compressible text " * 2000 + b'"}]}'
ENCODERS: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.compress, "deflate": zlib.compress}


@pytest.mark.parametrize("how", ["read", "chunks"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_answer_is_decoded(encoding: str, how: str) -> None:
    """gzip and zlib-wrapped deflate bodies, split across chunks, come back decoded by read() and chunks()."""
    packed = ENCODERS[encoding](PLAIN)
    third = len(packed) // 3
    answer = _response(
        _chunked(packed[:third], packed[third : 2 * third], packed[2 * third :]),
        "transfer-encoding: chunked",
        f"content-encoding: {encoding}",
    )

    async def go() -> None:
        async with _Server(_answer(lambda r: answer)) as server, _client() as client:
            assert await _body(await _send(client, server.url + "/"), how) == PLAIN

    _run(go())


def test_a_gzip_bomb_fails_fast_without_inflating_it_all(monkeypatch: pytest.MonkeyPatch) -> None:
    """64 KiB of gzip inflating to 64 MiB, over a 1 MiB bound: 502 upstream_bad_response, memory kept low."""
    monkeypatch.setattr(upstream, "MAX_RESPONSE_BYTES", 1024 * 1024)
    bomb = gzip.compress(bytes(64 * 1024 * 1024), compresslevel=9)
    answer = _ok(bomb, "content-encoding: gzip")

    async def go() -> GatewayError:
        async with _Server(_answer(lambda r: answer)) as server, _client() as client:
            resp = await _send(client, server.url + "/")
            return await _fails(resp.read())

    tracemalloc.start()
    try:
        err = _run(go())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (err.status, err.code) == (502, "upstream_bad_response")
    assert peak < 24 * 1024 * 1024, f"peak {peak} bytes while refusing a 1 MiB-bounded body"


# ----- 6. failures -----------------------------------------------------------------------------------


def test_connection_refused() -> None:
    """A port bound by nobody listening: 502 upstream_unreachable saying connection refused."""

    async def go() -> GatewayError:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))  # bound, not listening: connects are refused
            async with _client() as client:
                return await _fails(_send(client, f"http://127.0.0.1:{s.getsockname()[1]}/"))

    err = _run(go())
    assert (err.status, err.code) == (502, "upstream_unreachable") and "connection refused" in err.message


def test_a_server_that_never_answers_times_out_within_the_read_timeout() -> None:
    """Accepted, never answered: 504 upstream_timeout about read_timeout (0.3 s) later."""

    async def go() -> tuple[GatewayError, float]:
        async with _Server(_sleep_forever) as server, _client() as client:
            started = time.monotonic()
            err = await _fails(_send(client, server.url + "/", read_timeout=0.3))
            return err, time.monotonic() - started

    err, took = _run(go())
    assert (err.status, err.code) == (504, "upstream_timeout") and 0.25 < took < 1.5


@pytest.mark.parametrize("how", ["read", "chunks"])
def test_a_body_that_stalls_midway_times_out(how: str) -> None:
    """Headers and part of the body, then silence: read() and chunks() raise 504 upstream_timeout."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_response(b"0123456789", "content-length: 100"))
        await asyncio.sleep(60)

    async def go() -> GatewayError:
        async with _Server(handler) as server, _client() as client:
            resp = await _send(client, server.url + "/", read_timeout=0.3)
            return await _fails(_body(resp, how))

    err = _run(go())
    assert (err.status, err.code) == (504, "upstream_timeout")


def test_garbage_instead_of_http_is_a_bad_response() -> None:
    """``HELLO`` for a status line: 502 upstream_bad_response (not a hang, not a timeout)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HELLO\r\n\r\n")
        await asyncio.sleep(60)

    async def go() -> GatewayError:
        async with _Server(handler) as server, _client() as client:
            return await _fails(_send(client, server.url + "/"))

    err = _run(go())
    assert (err.status, err.code) == (502, "upstream_bad_response")


@pytest.mark.parametrize("how", ["read", "chunks"])
def test_a_connection_closed_mid_body_is_unreachable(how: str) -> None:
    """The server closes 10 bytes into a 100-byte body: 502 upstream_unreachable, not a short body."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_response(b"0123456789", "content-length: 100"))
        await writer.drain()

    async def go() -> GatewayError:
        async with _Server(handler) as server, _client() as client:
            resp = await _send(client, server.url + "/")
            return await _fails(_body(resp, how))

    err = _run(go())
    assert (err.status, err.code) == (502, "upstream_unreachable")


@pytest.mark.parametrize("how", ["read", "chunks"])
def test_a_trickling_answer_past_max_duration_times_out(how: str) -> None:
    """A piece every 0.1 s never trips the read timeout, but max_duration 0.3 s ends it with a 504."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_response(b"", "transfer-encoding: chunked"))
        for _ in range(50):
            writer.write(b"5\r\npiece\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)
        writer.write(b"0\r\n\r\n")

    async def go() -> tuple[GatewayError, float]:
        async with _Server(handler) as server, _client() as client:
            started = time.monotonic()
            resp = await _send(client, server.url + "/", read_timeout=1.0, max_duration=0.3)
            err = await _fails(_body(resp, how))
            return err, time.monotonic() - started

    err, took = _run(go())
    assert (err.status, err.code) == (504, "upstream_timeout") and took < 1.5


def test_https_to_a_plain_tcp_server_fails_with_a_502() -> None:
    """An https URL whose server speaks plain HTTP: a 502 GatewayError, promptly, not a hang."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)  # the TLS ClientHello
        writer.write(_response(b"", "content-length: 0", "connection: close", status="400 Bad Request"))
        await writer.drain()

    async def go() -> GatewayError:
        async with _Server(handler) as server, _client() as client:
            return await _fails(_send(client, f"https://127.0.0.1:{server.port}/"))

    assert _run(go()).status == 502


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)  # its own CA, when trusted
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_https_with_an_untrusted_self_signed_certificate_is_refused(tmp_path: Path) -> None:
    """TLS is verified: a self-signed upstream certificate fails the request with a 502, no bytes exchanged."""
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    seen: list[_Req] = []

    async def go() -> GatewayError:
        server = await asyncio.start_server(_recording(seen), "127.0.0.1", 0, ssl=context)
        try:
            async with _client() as client:
                return await _fails(_send(client, f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/"))
        finally:
            server.close()

    assert _run(go()).status == 502 and seen == []


def test_https_to_a_trusted_upstream_works_and_keeps_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the certificate trusted (SSL_CERT_FILE, as OpenSSL reads it), requests go over TLS, verified
    against the host, and reuse one connection; a chunked answer is read whole."""
    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    seen: list[_Req] = []
    accepted: list[int] = []
    ports: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        while (req := await _read_request(reader)) is not None:
            seen.append(req)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            await writer.drain()

    async def go() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=context)
        ports.append(server.sockets[0].getsockname()[1])
        url = f"https://127.0.0.1:{ports[0]}/v1/x"
        try:
            async with _client() as client:
                for _ in range(2):
                    resp = await _send(client, url, method="POST", body=b"{}")
                    assert resp.status == 200 and await resp.read() == b"abcde"
        finally:
            server.close()

    _run(go())
    assert len(accepted) == 1 and [r.body for r in seen] == [b"{}", b"{}"]
    assert seen[0].get("host") == f"127.0.0.1:{ports[0]}"


# ----- 7. concurrency --------------------------------------------------------------------------------


def test_fifty_concurrent_requests_each_get_their_own_answer() -> None:
    """50 requests at once through one client all succeed, each with the body echoing its own id."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (req := await _read_request(reader)) is not None:
            await asyncio.sleep(0.02)  # hold the connection so the requests overlap
            writer.write(_ok(b"id=" + req.target.rsplit("/", 1)[1].encode()))
            await writer.drain()

    async def go() -> None:
        async with _Server(handler) as server, _client() as client:
            bodies = await asyncio.gather(*(_get(client, f"{server.url}/echo/{i}") for i in range(50)))
            assert bodies == [b"id=%d" % i for i in range(50)]

    _run(go())


def test_a_host_name_is_looked_up_once_for_a_burst_of_new_connections() -> None:
    """Ten requests at once to ``localhost`` open ten connections after one DNS lookup (kept for
    minutes, as aiohttp's cache did), trying the next address when one refuses (``::1`` here)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (req := await _read_request(reader)) is not None:
            await asyncio.sleep(0.05)  # hold the connection so the requests overlap
            writer.write(_ok(req.target.encode()))
            await writer.drain()

    async def go() -> list[str]:
        loop = asyncio.get_running_loop()
        looked_up: list[str] = []
        real = loop.getaddrinfo

        async def counting(host: Any, *args: Any, **kwargs: Any) -> Any:
            looked_up.append(host)
            return await real(host, *args, **kwargs)

        loop.getaddrinfo = counting  # type: ignore[method-assign]
        async with _Server(handler) as server, _client() as client:
            urls = [f"http://localhost:{server.port}/{i}" for i in range(10)]
            assert await asyncio.gather(*(_get(client, u) for u in urls)) == [b"/%d" % i for i in range(10)]
            assert server.connections == 10
        return looked_up

    assert _run(go()) == ["localhost"]


# ----- 8. a failing upload ---------------------------------------------------------------------------


def test_an_upload_that_fails_midway_raises_and_its_connection_is_not_reused() -> None:
    """The body iterator raises a GatewayError after a piece: send() raises one, and that connection is dropped."""

    async def failing() -> AsyncIterator[bytes]:
        yield b"the start of a body"
        await asyncio.sleep(0.05)
        raise GatewayError(400, "the client went away", code="client_gone")

    async def go() -> None:
        async with _Server(_answer(lambda r: _ok(b"fine"))) as server, _client() as client:
            assert await _get(client, server.url + "/warm") == b"fine"  # a pooled connection to be reused
            await _fails(_send(client, server.url + "/upload", method="POST", stream=failing()))
            assert await _get(client, server.url + "/after") == b"fine"
            assert server.connections == 2

    _run(go())


# ----- 9. a large streamed answer --------------------------------------------------------------------


def test_a_large_streamed_answer_to_a_slow_consumer_arrives_exact() -> None:
    """8 MiB in 64 KiB chunks, consumed slowly through chunks(): every byte, in order (backpressure loses nothing)."""
    payload = os.urandom(8 * 1024 * 1024)
    step = 64 * 1024

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_response(b"", "transfer-encoding: chunked"))
        for i in range(0, len(payload), step):
            writer.write(b"%x\r\n%s\r\n" % (step, payload[i : i + step]))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def go() -> bytes:
        got = bytearray()
        async with _Server(handler) as server, _client() as client:
            async for piece in (await _send(client, server.url + "/")).chunks():
                got += piece
                await asyncio.sleep(0.002)
        return bytes(got)

    got = _run(go(), timeout=30.0)
    assert len(got) == len(payload) and got == payload


# ----- 10. interim answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "interim", [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n"]
)
def test_an_interim_1xx_answer_is_skipped(interim: bytes) -> None:
    """A 100 or 103 before the real answer: the status is the final 200 and the body is the real one."""

    async def go() -> None:
        async with _Server(_answer(lambda r: interim + _ok(b"real"))) as server, _client() as client:
            assert await _get(client, server.url + "/") == b"real"

    _run(go())
