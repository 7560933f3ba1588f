"""The in-process transport behind ``mock://`` URLs: the simulated model and files API, no socket.

Mounted on the upstream client by the composition root, so the production client never names it.
A request the simulated model refuses (``MockError``: a bound, a field of the wrong type) is its
400 in OpenAI's shape; an answer that is allowed but large is built in a worker thread, never on
the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import orjson

from gateway.wire.types import CHAT, UpstreamRequest
from gateway.wire.upstream import UpstreamResponse
from simulators.bounds import MockError, heavy
from simulators.files import FilesSimulator
from simulators.model import Simulator

MOCK_FILES = "mock://files"  # the in-process files API of the mock provider


class _MockResponse(UpstreamResponse):
    """The in-process simulator behind ``mock://`` URLs: the same interface, no socket."""

    __slots__ = ("_body", "_events", "headers", "status")

    def __init__(self, body: bytes | None, events: list[bytes] | None) -> None:
        self.status = 200
        self.headers = {"content-type": "text/event-stream" if events is not None else "application/json"}
        self._body = body
        self._events = events

    async def read(self) -> bytes:
        return self._body or b""

    async def chunks(self) -> AsyncIterator[bytes]:
        for e in self._events or ():
            yield b"data: " + e + b"\n\n"
        yield b"data: [DONE]\n\n"


class _MockRawResponse(UpstreamResponse):
    """An in-process answer of the simulated files API."""

    __slots__ = ("_body", "headers", "status")

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        self.status = status
        self.headers = {"content-type": content_type, "content-length": str(len(body))}
        self._body = body

    async def read(self) -> bytes:
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self._body


class InProcessTransport:
    """Answers ``mock://chat``, ``mock://completions``, ``mock://embeddings`` and ``mock://files/...``."""

    def __init__(self) -> None:
        self._mock = Simulator()
        self._files = FilesSimulator()

    async def send(self, req: UpstreamRequest, stream_body: AsyncIterable[bytes] | None) -> UpstreamResponse:
        if req.url.startswith(MOCK_FILES):
            raw = b"".join([c async for c in stream_body]) if stream_body is not None else req.body or b""
            path, _, query = req.url[len(MOCK_FILES) :].partition("?")
            status, data, ctype = self._files.respond(
                req.method, "/v1" + path, query, req.headers.get("content-type", ""), raw
            )
            return _MockRawResponse(status, data, ctype)
        raw = req.body or b"{}"
        body = orjson.loads(raw)
        endpoint = req.url[len("mock://") :] or CHAT
        try:
            if isinstance(body, dict) and heavy(endpoint, body, len(raw)):
                return await asyncio.to_thread(self._answer, endpoint, body, req.stream)
            return self._answer(endpoint, body, req.stream)
        except MockError as e:
            return _MockRawResponse(e.status, e.to_bytes(), "application/json")

    def _answer(self, endpoint: str, body: Any, stream: bool) -> UpstreamResponse:
        if not isinstance(body, dict):
            raise MockError("The request body must be a JSON object.")
        if stream:
            return _MockResponse(None, self._mock.stream(endpoint, body))
        return _MockResponse(orjson.dumps(self._mock.respond(endpoint, body)), None)
