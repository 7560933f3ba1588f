"""``switchyard mock-upstream``: the simulator served over HTTP in a provider's dialect.

Used by demos, the test suite and the benchmark. Every request it receives is kept (the
last 1,000: method, path, query, headers, JSON body) and can be read back at
``GET /_requests`` and cleared with ``DELETE /_requests``, so tests can assert what an
upstream really got.

The openai dialect also serves OpenAI's Responses API (``/v1/responses`` and below, with the
stored responses in memory): ``simulators.openai_responses``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.wire.asgi import Receive, Scope, Send, answer_lifespan, read_body, send_json
from providers.base import CHAT, COMPLETIONS, EMBEDDINGS
from simulators.files import PREFIXES as FILE_PREFIXES
from simulators.files import FilesSimulator
from simulators.model import Simulator
from simulators.openai_responses import ResponsesSimulator
from simulators.openai_responses import handle as handle_responses

Handler = Callable[["MockUpstream", Scope, dict[str, Any], Send], Awaitable[None]]


async def _sse(send: Send, events: list[bytes], chunk_delay: float, done: bool = True) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for e in events:
        if chunk_delay:
            await asyncio.sleep(chunk_delay)
        await send({"type": "http.response.body", "body": e, "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n" if done else b"", "more_body": False})


async def _openai(up: MockUpstream, scope: Scope, body: dict[str, Any], send: Send) -> None:
    path = scope["path"]
    if path == "/v1/responses" or path.startswith("/v1/responses/"):
        return await handle_responses(up, scope, body, send)
    endpoint = {"/v1/chat/completions": CHAT, "/v1/completions": COMPLETIONS, "/v1/embeddings": EMBEDDINGS}.get(path)
    if endpoint is None:
        err = {
            "error": {"message": f"Unknown path {path}", "type": "invalid_request_error", "param": None, "code": None}
        }
        return await send_json(send, 404, orjson.dumps(err), "mock")
    if body.get("stream") is True and endpoint != EMBEDDINGS:
        events = [b"data: " + e + b"\n\n" for e in up.sim.stream(endpoint, body)]
        return await _sse(send, events, up.chunk_delay)
    await send_json(send, 200, orjson.dumps(up.sim.respond(endpoint, body)), "mock")


# dialect -> handler; other dialects live in their own modules (``simulators.<dialect>``,
# each exporting ``handle``), written independently of the adapters they test.
DIALECTS: dict[str, Handler | str] = {
    "openai": _openai,
    "anthropic": "simulators.anthropic:handle",
    "gemini": "simulators.gemini:handle",
    "cohere": "simulators.cohere:handle",
}


def _dialect(name: str) -> Handler:
    h = DIALECTS[name]
    if isinstance(h, str):
        import importlib

        module, attr = h.split(":")
        h = DIALECTS[name] = getattr(importlib.import_module(module), attr)
    return h


MAX_SIMULATED_BODY = 1 << 30  # simulators take whatever they are sent


class MockUpstream:
    def __init__(
        self,
        dialect: str = "openai",
        latency_ms: float = 0.0,
        chunks: int | None = None,
        chunk_delay_ms: float = 0.0,
        record: bool = True,
    ) -> None:
        self.handler = _dialect(dialect)
        self.sim = Simulator(chunks)
        self.latency = latency_ms / 1000.0
        self.chunk_delay = chunk_delay_ms / 1000.0
        self.record = record
        self.requests: deque[dict[str, Any]] = deque(maxlen=1000)
        # OpenAI's files, fine-tuning and batch APIs, for the openai dialect.
        self.files = FilesSimulator() if dialect == "openai" else None
        # OpenAI's Responses API and its stored responses, for the openai dialect.
        self.responses = ResponsesSimulator(chunks) if dialect == "openai" else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await answer_lifespan(receive, send)
        if scope["type"] != "http":
            return
        if scope["path"] == "/_requests":
            if scope["method"] == "DELETE":
                self.requests.clear()
            return await send_json(send, 200, orjson.dumps(list(self.requests)), "mock")
        raw = await read_body(receive, MAX_SIMULATED_BODY, None)
        if self.files is not None and scope["path"].startswith(FILE_PREFIXES):
            self._record(scope, {"_bytes": len(raw)})
            return await self.files.handle(scope, raw, send)
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        self._record(scope, body)
        if self.latency:
            await asyncio.sleep(self.latency)
        await self.handler(self, scope, body if isinstance(body, dict) else {}, send)

    def _record(self, scope: Scope, body: Any) -> None:
        if self.record:
            self.requests.append(
                {
                    "method": scope["method"],
                    "path": scope["path"],
                    "query": scope.get("query_string", b"").decode(),
                    "headers": {k.decode(): v.decode("latin-1") for k, v in scope["headers"]},
                    "body": body,
                }
            )


def serve_mock(
    dialect: str, host: str, port: int, latency_ms: float = 0.0, chunks: int | None = None, chunk_delay_ms: float = 0.0
) -> None:
    import uvicorn

    app = MockUpstream(dialect, latency_ms, chunks, chunk_delay_ms)
    uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", access_log=False, log_level="warning")
