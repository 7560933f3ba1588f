"""The one pooled HTTP client to upstreams, behind a small interface.

The connections are our own lean HTTP/1.1 client (``gateway.wire.connection``): aiohttp's client cost
about six times its CPU per request, and a gateway does little else (README, "Choice of HTTP
client"). Mounted transports answer other URL schemes without the network (``mount``).

Timeouts (docs/config.md "providers"): ``connect_timeout`` for the connection, then ``timeout`` as the
longest wait for the response headers and between any two body chunks, and ``max_duration`` for the
whole answer, checked as each piece of the body arrives (an upstream that stops sending is caught by
``timeout``, one that trickles by this check). Failures become ``GatewayError``s with the documented
status and code (docs/errors.md).

A whole answer read into memory is bounded by ``MAX_RESPONSE_BYTES`` as it arrives, inflated (gzip
and deflate are inflated in bounded pieces): a content-length is never trusted for it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Protocol

from gateway.errors import GatewayError
from gateway.wire.connection import BadResponse, BodyFailed, ConnectError, Pool, Response, UpstreamFailure
from gateway.wire.types import UpstreamRequest

# A whole (non-streamed) upstream answer is held in memory to translate it: bound it, so a
# broken or hostile upstream cannot exhaust the worker.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_DURATION = 3600.0  # providers.<name>.max_duration's default


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

    def __init__(self, resp: Response, provider: str, until: float) -> None:
        self._resp = resp
        self._provider = provider
        self._until = until  # time.monotonic() by which the whole answer must be in
        self.status = resp.status
        self.headers = resp.headers

    async def read(self) -> bytes:
        """The body as it arrives (inflated), no more than the bound, within max_duration."""
        parts: list[bytes] = []
        size = 0
        resp = self._resp
        try:
            while data := await resp.next():
                if time.monotonic() > self._until:
                    raise too_slow(self._provider)
                size += len(data)
                if size > MAX_RESPONSE_BYTES:
                    raise GatewayError(
                        502,
                        f"{self._provider}: the upstream's response is over {MAX_RESPONSE_BYTES} bytes",
                        code="upstream_bad_response",
                        reason="too_large",
                    )
                parts.append(data)
        except (OSError, UpstreamFailure) as e:  # TimeoutError is an OSError
            raise _failed(self._provider, e) from None
        finally:
            resp.close()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        resp = self._resp
        until = self._until
        try:
            while data := await resp.next():
                if time.monotonic() > until:
                    resp.close()
                    raise too_slow(self._provider)
                yield data
        except (OSError, UpstreamFailure) as e:
            raise _failed(self._provider, e) from None

    def close(self) -> None:
        # Closing drops the connection (unless the answer was read to its end), so an upstream
        # still generating sees the disconnect at once and stops billing.
        self._resp.close()


def _failed(provider: str, e: Exception) -> GatewayError:
    """A failure of the connection as the documented error (docs/errors.md)."""
    if isinstance(e, TimeoutError):
        return timed_out(provider)
    if isinstance(e, BadResponse):
        return GatewayError(
            502,
            f"{provider}: the upstream sent an invalid HTTP response",
            code="upstream_bad_response",
            reason="bad_response",
        )
    if isinstance(e, ConnectError):
        return unreachable(provider, "connection refused" if e.refused else "connect failed")
    return unreachable(provider, str(e) or type(e).__name__)


USER_AGENT = "switchyard"


class Transport(Protocol):
    """Something that answers ``UpstreamRequest``s without the network (httpx's MockTransport idea):
    the composition root mounts one per URL scheme, e.g. the in-process simulator for ``mock://``."""

    async def send(self, req: UpstreamRequest, body: AsyncIterable[bytes] | None) -> UpstreamResponse: ...


class UpstreamClient:
    def __init__(self) -> None:
        self._pool: Pool | None = None
        self._transports: dict[str, Transport] = {}

    def mount(self, scheme: str, transport: Transport) -> None:
        """Answer URLs starting with ``scheme`` (e.g. ``"mock://"``) with ``transport``."""
        self._transports[scheme] = transport

    async def start(self) -> None:
        self._pool = Pool(keepalive=30.0)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

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
        assert self._pool is not None, "UpstreamClient.start() was not awaited"
        until = time.monotonic() + max_duration
        try:
            # A configured User-Agent (any case) wins over the gateway's own.
            resp = await self._pool.request(
                req.method, req.url, req.headers, req.body, body, connect_timeout, read_timeout, USER_AGENT
            )
        except BodyFailed:
            raise unreachable(provider, "the request body failed") from None
        except (OSError, UpstreamFailure) as e:
            raise _failed(provider, e) from None
        return _HTTPResponse(resp, provider, until)
