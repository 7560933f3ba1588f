"""HTTP/1.1 to upstreams: one asyncio protocol per connection (httptools parses), pooled per origin.

Why not aiohttp's client: measured on this machine kind, it costs about six times this one's CPU
per request, and a bare proxy on it twice one on this (README, "Choice of HTTP client"); an LLM
gateway does little else. What the
gateway asks of a client is small: send one request on a kept-alive connection, read the head,
then the body whole or piece by piece with a timeout between pieces, and drop the connection when
the caller gives up. Redirects, cookies, proxies and HTTP/2 are not asked for.

Buffered body data past ``_HIGH_WATER`` pauses reading, so a slow consumer holds the upstream back
(TCP flow control) instead of filling memory. gzip and deflate bodies are inflated in bounded
pieces as they are read, never ahead of the reader (``gateway.wire.inflate``).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterable
from typing import Any
from urllib.parse import urlsplit

import httptools

from gateway.wire.inflate import BrokenBody, inflater

_HIGH_WATER = 1 << 20  # buffered body bytes that pause reading
_IDLE_PER_ORIGIN = 256  # idle connections kept per origin; more are closed
_IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE"))
_RACE = 1.0  # seconds after sending within which a silent close of a reused connection is the race
_DNS_TTL = 300.0  # seconds a host's addresses are kept (aiohttp's ttl_dns_cache, as the gateway had it)
ACCEPT_ENCODING = "gzip, deflate"


class UpstreamFailure(Exception):
    """The exchange failed for a reason of the connection's (timeouts are ``TimeoutError``)."""


class ConnectError(UpstreamFailure):
    """The connection could not be made; ``refused`` when nothing listened."""

    def __init__(self, why: str, refused: bool) -> None:
        super().__init__(why)
        self.refused = refused


class BadResponse(UpstreamFailure):
    """The upstream did not speak HTTP/1.1 (or sent a body encoding it claims and breaks)."""


class Disconnected(UpstreamFailure):
    """The connection closed before the response was complete."""


class BodyFailed(UpstreamFailure):
    """The request body's producer raised: the request was abandoned (``__cause__`` says why)."""


class Headers:
    """Response headers: case-insensitive ``get``, ``in`` and ``[]``; ``items`` as sent."""

    __slots__ = ("_map", "_raw")

    def __init__(self, raw: list[tuple[str, str]]) -> None:
        self._raw = raw
        m: dict[str, str] = {}
        for k, v in raw:
            k = k.lower()
            m[k] = f"{m[k]}, {v}" if k in m else v
        self._map = m

    def get(self, name: str, default: Any = None) -> Any:
        return self._map.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._map[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._map

    def items(self) -> list[tuple[str, str]]:
        return list(self._raw)

    def __repr__(self) -> str:
        return f"Headers({self._raw!r})"


def _retrieved(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


@functools.cache
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _Unasked(Exception):
    """An answer after this exchange's: raised to stop the parser there."""


class _Conn(asyncio.Protocol):
    """One connection; serves one exchange at a time (``begin``) and says whether it can serve another."""

    def __init__(self, key: tuple[str, str, int]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None
        self.lost = False
        self.idle = False  # in the pool, between exchanges
        self.idle_since = 0.0
        self.begin()

    def begin(self) -> None:
        self.status = 0
        self.raw: list[tuple[str, str]] = []
        self.head_done = False
        self.done = False
        self.delimited = False  # the body's end is known (content-length or chunked)
        self.keep = False
        self.error: Exception | None = None
        self.pieces: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self.received = False  # any response byte: a stale connection sends none
        self.bodiless = False  # a HEAD request's answer has no body, whatever its length says
        self.cut = False  # the request's body was not sent whole

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.idle:
            # Nothing was asked (a server's parting "408", or garbage): never let it pass for
            # the answer to the next request sent here.
            self.abort()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as e:
            if not isinstance(e.__context__, _Unasked):
                self._fail(BadResponse(str(e.__context__ or e)))
                return
            # A second message in the same exchange (``on_message_begin``): not asked for, so the
            # connection is not kept; the answer already complete stands.
            self.keep = False
            if self.transport is not None:
                self.transport.abort()
        except httptools.HttpParserUpgrade:
            self._fail(BadResponse("the upstream switched protocols"))
        except httptools.HttpParserError as e:
            self._fail(BadResponse(str(e)))

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.head_done and not self.done and not self.delimited and self.error is None:
            self.done = True  # a body without a length ends with the connection (HTTP/1.0 style)
        elif not self.done and self.error is None:
            self.error = Disconnected("ServerDisconnected" if exc is None else type(exc).__name__)
        self._wake()
        d, self.drained = self.drained, None
        if d is not None and not d.done():
            d.set_result(None)

    def pause_writing(self) -> None:
        if self.drained is None:
            self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        d, self.drained = self.drained, None
        if d is not None and not d.done():
            d.set_result(None)

    # --- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done:
            raise _Unasked()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            self.raw = []  # an interim response: the real one follows
            return
        self.status = status
        self.head_done = True
        for k, v in self.raw:
            k = k.lower()
            if k == "content-length" or (k == "transfer-encoding" and "chunked" in v.lower()):
                self.delimited = True
        if status in (204, 304):
            self.delimited = True
        if self.bodiless:
            # httptools cannot be told the request was HEAD: end here, and give the next exchange
            # a new parser (this one waits for a body that will not come).
            self.delimited = self.done = True
            self.keep = self.parser.should_keep_alive()
            self.parser = httptools.HttpResponseParser(self)
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.head_done:
            return  # the end of an interim response
        self.done = True
        self.keep = self.parser.should_keep_alive()
        self._wake()

    # --- the exchange --------------------------------------------------------------------

    def _fail(self, err: Exception) -> None:
        if self.error is None:
            self.error = err
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    def _wake(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Until something arrives (or the connection ends); ``TimeoutError`` after ``timeout``."""
        loop = asyncio.get_running_loop()
        w = self.waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, w)
        try:
            await w
        finally:
            timer.cancel()
            self.waiter = None

    def take(self) -> bytes:
        """Everything buffered, as one piece; resumes reading if it was paused."""
        p = self.pieces
        data = p.popleft() if len(p) == 1 else b"".join(p)
        p.clear()
        self.buffered = 0
        if self.paused and self.transport is not None and not self.lost:
            self.paused = False
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        return self.done and self.keep and not self.lost and self.error is None and not self.pieces and not self.cut

    def abort(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abort()
        self.lost = True


def _expire(w: asyncio.Future[None]) -> None:
    if not w.done():
        w.set_exception(TimeoutError())


class Response:
    """A response whose head has arrived; the body is read with ``next`` (b"" at its end)."""

    __slots__ = ("_conn", "_inflate", "_pool", "_read_timeout", "headers", "status")

    def __init__(self, conn: _Conn, pool: Pool, read_timeout: float) -> None:
        self._conn = conn
        self._pool = pool
        self._read_timeout = read_timeout
        self.status = conn.status
        self.headers = Headers(conn.raw)
        self._inflate = inflater(self.headers.get("content-encoding"))

    async def next(self) -> bytes:
        """The next piece of the body (inflated); b"" once it has all been read."""
        if self._inflate is not None:
            return await self._next_inflated()
        return await self._next_raw()

    async def _next_raw(self) -> bytes:
        c = self._conn
        if c is None:
            return b""
        while True:
            if c.pieces:
                return c.take()
            if c.done:
                self._finish()
                return b""
            if c.error is not None:
                self._drop()
                raise c.error
            try:
                await c.wait(self._read_timeout)
            except BaseException:
                self._drop()  # timed out, or the caller was cancelled: the upstream must see it go
                raise

    async def _next_inflated(self) -> bytes:
        z = self._inflate
        assert z is not None
        try:
            while True:
                if z.pending and (out := z.step(z.pending)):
                    return out
                data = await self._next_raw()
                if not data:
                    self._inflate = None
                    return z.end()
                if out := z.step(data):
                    return out
        except BrokenBody as e:
            self._drop()
            raise BadResponse(str(e)) from None

    def _finish(self) -> None:
        c, self._conn = self._conn, None
        if c is not None:
            self._pool.release(c)

    def _drop(self) -> None:
        c, self._conn = self._conn, None
        if c is not None:
            c.abort()

    def close(self) -> None:
        """Give up on the rest: the connection is closed, so the upstream sees it and stops (one read
        to its end goes back to the pool: ``release`` decides)."""
        self._finish()

    def __del__(self) -> None:
        # Dropped unread (a task that died between head and body): close, or the socket stays open.
        c = self._conn
        if c is not None and not c.lost and c.transport is not None:
            try:
                c.transport.abort()
            except RuntimeError:
                pass  # the loop is already closed (interpreter shutdown): so is the socket


class Pool:
    """Kept-alive connections per origin (scheme, host, port), at most ``keepalive`` seconds idle."""

    def __init__(self, keepalive: float = 30.0, dns_ttl: float = _DNS_TTL) -> None:
        self.keepalive = keepalive
        self.dns_ttl = dns_ttl
        self._dns: dict[tuple[str, int], tuple[float, asyncio.Future[list[Any]]]] = {}
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._origins: dict[str, tuple[tuple[str, str, int], str, str]] = {}
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    def _origin(self, url: str) -> tuple[tuple[str, str, int], str, str]:
        """(key, host header, request target) for ``url``; origins are cached, paths are not."""
        scheme, _, rest = url.partition("://")
        slash = rest.find("/")
        authority, target = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
        hit = self._origins.get(scheme + authority)
        if hit is not None:
            return hit[0], hit[1], target
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ConnectError(f"not an http(s) URL: {scheme or '?'}", False)
        port = parts.port or (443 if scheme == "https" else 80)
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        header = shown if port == (443 if scheme == "https" else 80) else f"{shown}:{port}"
        entry = ((scheme, host, port), header, "")
        if len(self._origins) < 1024:
            self._origins[scheme + authority] = entry
        return entry[0], header, target

    async def _connect(self, key: tuple[str, str, int], timeout: float) -> _Conn:
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if key[0] == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        try:
            async with asyncio.timeout(timeout):
                conn = await self._open(loop, key, tls)
        except ConnectionRefusedError:
            raise ConnectError("connection refused", True) from None
        except TimeoutError:
            raise
        except (OSError, ssl.SSLError) as e:
            raise ConnectError(type(e).__name__, False) from None
        return conn

    async def _open(
        self, loop: asyncio.AbstractEventLoop, key: tuple[str, str, int], tls: ssl.SSLContext | None
    ) -> _Conn:
        """A connection to the first of the host's addresses that answers (names resolved through the cache)."""
        _, host, port = key
        hostname = host if tls else None
        if _is_ip(host):
            return (await loop.create_connection(lambda: _Conn(key), host, port, ssl=tls, server_hostname=hostname))[1]
        error: OSError | None = None
        for family, _, proto, _, addr in await self._resolve(loop, host, port):
            try:
                _, conn = await loop.create_connection(
                    lambda: _Conn(key), addr[0], addr[1], family=family, proto=proto, ssl=tls, server_hostname=hostname
                )
                return conn
            except OSError as e:
                error = e  # the next address, as create_connection does for a name
        raise error or OSError(f"{host} has no address")

    async def _resolve(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[Any]:
        """The host's addresses, looked up once per ``dns_ttl`` (concurrent connections share the lookup):
        a burst of new connections to a provider must not be a burst of DNS queries, one per thread."""
        now = time.monotonic()
        hit = self._dns.get((host, port))
        if hit is None or hit[0] <= now:
            fut = asyncio.ensure_future(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))
            fut.add_done_callback(_retrieved)  # its waiters may all have gone: no "never retrieved" log
            hit = self._dns[(host, port)] = (now + self.dns_ttl, fut)
            if len(self._dns) > 1024:
                self._dns = {k: v for k, v in self._dns.items() if v[0] > now}
        try:
            return await asyncio.shield(hit[1])
        except OSError:
            if self._dns.get((host, port)) is hit:
                del self._dns[(host, port)]  # a failed lookup is not kept
            raise

    def _take_idle(self, key: tuple[str, str, int]) -> _Conn | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            c = idle.pop()
            if not c.lost and now - c.idle_since < self.keepalive:
                c.idle = False
                return c
            c.abort()
        return None

    def release(self, c: _Conn) -> None:
        if self._closed or not c.reusable():
            c.abort()
            return
        idle = self._idle.setdefault(c.key, [])
        now = time.monotonic()
        # Taken newest first, so the stalest wait at the front: prune there as others come back.
        while idle and (idle[0].lost or now - idle[0].idle_since >= self.keepalive):
            idle.pop(0).abort()
        if len(idle) >= _IDLE_PER_ORIGIN:
            c.abort()
            return
        c.idle_since = now
        c.begin()
        c.idle = True
        idle.append(c)

    async def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        stream: AsyncIterable[bytes] | None,
        connect_timeout: float,
        read_timeout: float,
        user_agent: str = "",
    ) -> Response:
        """Send, and wait for the response head (at most ``read_timeout`` after the request is out);
        ``user_agent`` goes unless ``headers`` name one."""
        key, host, target = self._origin(url)
        lines = [f"{method} {target} HTTP/1.1\r\nhost: {host}\r\n"]
        named = set()
        for k, v in headers.items():
            if "\n" in v or "\r" in v:
                raise ValueError(f"a line break in the {k} header")
            lines.append(f"{k}: {v}\r\n")
            named.add(k.lower())
        if user_agent and "user-agent" not in named:
            lines.append(f"user-agent: {user_agent}\r\n")
        if "accept-encoding" not in named:
            lines.append(f"accept-encoding: {ACCEPT_ENCODING}\r\n")
        if stream is None:
            if body is not None or method in ("POST", "PUT", "PATCH"):
                lines.append(f"content-length: {len(body or b'')}\r\n")
        elif "content-length" not in named:
            lines.append("transfer-encoding: chunked\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        if stream is not None:
            return await self._streamed(key, head, stream, "content-length" not in named, connect_timeout, read_timeout)
        data = head + body if body else head
        for attempt in (0, 1):
            conn = self._take_idle(key) if attempt == 0 else None
            reused = conn is not None
            if conn is None:
                conn = await self._connect(key, connect_timeout)
            assert conn.transport is not None
            conn.bodiless = method == "HEAD"
            conn.transport.write(data)
            sent = time.monotonic()
            try:
                await self._head(conn, read_timeout)
            except Disconnected:
                # The keep-alive race: the upstream closed the idle connection as the request went
                # out; once more on a new one. Not for a POST that may have been taken and worked on
                # (a load balancer's idle timeout in the middle of a long generation): that would
                # bill twice, so only at once after sending.
                if reused and not conn.received and (method in _IDEMPOTENT or time.monotonic() - sent < _RACE):
                    continue
                raise
            return Response(conn, self, read_timeout)
        raise AssertionError("unreachable")

    async def _head(self, conn: _Conn, read_timeout: float) -> None:
        try:
            while not conn.head_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(read_timeout)
        except BaseException:
            conn.abort()
            raise

    async def _streamed(
        self,
        key: tuple[str, str, int],
        head: bytes,
        stream: AsyncIterable[bytes],
        chunked: bool,
        connect_timeout: float,
        read_timeout: float,
    ) -> Response:
        """The body as its producer yields it (never retried: it cannot be produced twice)."""
        conn = self._take_idle(key) or await self._connect(key, connect_timeout)
        t = conn.transport
        assert t is not None
        try:
            t.write(head)
            async for piece in stream:
                if conn.lost or conn.head_done:
                    # The upstream answered (or left) before the body's end: stop sending, and never
                    # reuse the connection (the upstream would read the next request as this body).
                    conn.cut = True
                    break
                if piece:
                    t.writelines((b"%x\r\n" % len(piece), piece, b"\r\n") if chunked else (piece,))
                if conn.drained is not None:
                    await conn.drained
            else:
                if chunked and not conn.lost:
                    t.write(b"0\r\n\r\n")
        except Exception as e:
            conn.abort()
            raise BodyFailed(type(e).__name__) from e
        except BaseException:
            conn.abort()
            raise
        await self._head(conn, read_timeout)
        return Response(conn, self, read_timeout)

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for c in idle:
                c.abort()
        self._idle.clear()
