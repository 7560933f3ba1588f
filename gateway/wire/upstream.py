"""The one pooled HTTP client to upstreams, behind a small interface.

aiohttp is the client because it costs about 12x less CPU per request than httpx on this
machine kind and its pool holds up under hundreds of concurrent slow requests (README,
"Choice of HTTP client"). Nothing outside this module imports aiohttp.

Timeouts (docs/config.md "providers"): ``connect_timeout`` for the connection, then ``timeout`` as the
longest wait for the response headers and between any two body chunks (aiohttp's
``sock_read``), and ``max_duration`` for the whole answer, checked as each piece of the body
arrives (no timer per request: an upstream that stops sending is caught by ``sock_read``, one
that trickles by this check). Failures become ``GatewayError``s with the documented status and code (docs/errors.md).

A whole answer read into memory is bounded by ``MAX_RESPONSE_BYTES`` as it arrives, decompressed
(aiohttp inflates gzip and deflate in bounded pieces): a content-length is never trusted for it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Protocol

import aiohttp

from gateway.errors import GatewayError
from gateway.wire.types import UpstreamRequest

# A whole (non-streamed) upstream answer is held in memory to translate it: bound it, so a
# broken or hostile upstream cannot exhaust the worker.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_DURATION = 3600.0  # providers.<name>.max_duration's default
_TIMEOUTS_CACHED = 64


def unreachable(provider: str, why: str) -> GatewayError:
    return GatewayError(
        502, f"{provider}: upstream unreachable ({why})", code="upstream_unreachable", reason="unreachable"
    )


def timed_out(provider: str) -> GatewayError:
    return GatewayError(504, f"{provider}: upstream timed out", code="upstream_timeout", reason="timeout")


def too_slow(provider: str) -> GatewayError:
    why = f"{provider}: the upstream's answer took longer than its max_duration"
    return GatewayError(504, why, code="upstream_timeout", reason="max_duration")


class UpstreamResponse:
    """Status, headers and a body to read whole or chunk by chunk."""

    status: int = 200
    headers: Any = None

    async def read(self) -> bytes:
        raise NotImplementedError

    def chunks(self) -> AsyncIterator[bytes]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _HTTPResponse(UpstreamResponse):
    __slots__ = ("_provider", "_resp", "_until", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse, provider: str, until: float) -> None:
        self._resp = resp
        self._provider = provider
        self._until = until  # time.monotonic() by which the whole answer must be in
        self.status = resp.status
        self.headers = resp.headers

    async def read(self) -> bytes:
        """The body as it arrives (decompressed), no more than the bound, within max_duration."""
        parts: list[bytes] = []
        size = 0
        content = self._resp.content
        try:
            while data := await content.readany():
                if time.monotonic() > self._until:
                    self._resp.close()
                    raise too_slow(self._provider)
                size += len(data)
                if size > MAX_RESPONSE_BYTES:
                    self._resp.close()
                    raise GatewayError(
                        502,
                        f"{self._provider}: the upstream's response is over {MAX_RESPONSE_BYTES} bytes",
                        code="upstream_bad_response",
                        reason="too_large",
                    )
                parts.append(data)
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise timed_out(self._provider) from None
        except aiohttp.ClientError as e:
            raise unreachable(self._provider, type(e).__name__) from None
        finally:
            self._resp.release()
        return b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        content = self._resp.content
        until = self._until
        try:
            while True:
                data = await content.readany()
                if not data:
                    return
                if time.monotonic() > until:
                    raise too_slow(self._provider)
                yield data
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise timed_out(self._provider) from None
        except aiohttp.ClientError as e:
            raise unreachable(self._provider, type(e).__name__) from None

    def close(self) -> None:
        # Closing (not releasing) drops the connection, so an upstream still generating
        # sees the disconnect at once and stops billing.
        if not self._resp.closed:
            self._resp.close()


USER_AGENT = "switchyard"


class Transport(Protocol):
    """Something that answers ``UpstreamRequest``s without the network (httpx's MockTransport idea):
    the composition root mounts one per URL scheme, e.g. the in-process simulator for ``mock://``."""

    async def send(self, req: UpstreamRequest, body: AsyncIterable[bytes] | None) -> UpstreamResponse: ...


class UpstreamClient:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float, float], aiohttp.ClientTimeout] = {}
        self._transports: dict[str, Transport] = {}

    def mount(self, scheme: str, transport: Transport) -> None:
        """Answer URLs starting with ``scheme`` (e.g. ``"mock://"``) with ``transport``."""
        self._transports[scheme] = transport

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30, enable_cleanup_closed=True)
        # No session-level headers: aiohttp then merges nothing and takes its fast path for its
        # automatic headers; every request names its user agent itself (``send``).
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=True)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _timeout(self, connect: float, read: float) -> aiohttp.ClientTimeout:
        t = self._timeouts.get((connect, read))
        if t is None:
            t = aiohttp.ClientTimeout(total=None, connect=connect, sock_read=read)
            if len(self._timeouts) < _TIMEOUTS_CACHED:  # retries ask for what is left: not worth keeping
                self._timeouts[(connect, read)] = t
        return t

    async def send(
        self,
        req: UpstreamRequest,
        provider: str,
        connect_timeout: float,
        read_timeout: float,
        body: AsyncIterable[bytes] | None = None,
        max_duration: float = DEFAULT_MAX_DURATION,
    ) -> UpstreamResponse:
        """Send and wait for the response headers; raises GatewayError on failure.

        ``body``, when given, is streamed as the request body instead of ``req.body`` (an upload):
        written as it is produced, never held whole; with a ``content-length`` in ``req.headers``
        it goes out as is, else chunked. When ``body`` itself fails (the client went away, a limit
        was hit) the upstream request is aborted and the failure surfaces here.
        """
        if self._transports and (scheme := req.url.partition("://")[0] + "://") in self._transports:
            return await self._transports[scheme].send(req, body)
        assert self._session is not None, "UpstreamClient.start() was not awaited"
        until = time.monotonic() + max_duration
        try:
            resp = await self._session.request(
                req.method,
                req.url,
                data=req.body if body is None else body,
                headers={"user-agent": USER_AGENT, **req.headers},  # a configured User-Agent comes later and wins
                timeout=self._timeout(connect_timeout, read_timeout),
                allow_redirects=False,
            )
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise timed_out(provider) from None
        except aiohttp.ClientConnectorError as e:
            raise unreachable(
                provider, "connection refused" if isinstance(e.os_error, ConnectionRefusedError) else "connect failed"
            ) from None
        except aiohttp.ClientResponseError as e:
            raise GatewayError(
                502,
                f"{provider}: the upstream sent an invalid HTTP response",
                code="upstream_bad_response",
                reason="bad_response",
            ) from e
        except aiohttp.ClientError as e:
            raise unreachable(provider, type(e).__name__) from None
        return _HTTPResponse(resp, provider, until)
