"""A recording upstream for the dialects that have no simulator (Azure OpenAI, Fireworks).

Each test sets ``reply`` to a provider's documented answer, then checks what was recorded (URL,
headers, body) and what the client got back.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.wire.asgi import answer_lifespan, read_body
from simulators.server import MAX_SIMULATED_BODY


class Recorder:
    """An ASGI upstream that records every request and answers with ``reply`` (status, content type, body)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reply: tuple[int, str, bytes] = (200, "application/json", b"{}")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await answer_lifespan(receive, send)
        raw = await read_body(receive, MAX_SIMULATED_BODY, None)
        self.requests.append(
            {
                "path": scope["path"],
                "query": scope["query_string"].decode(),
                "headers": {k.decode(): v.decode("latin-1") for k, v in scope["headers"]},
                "body": orjson.loads(raw) if raw else None,
            }
        )
        status, ctype, body = self.reply
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype.encode())]})
        await send({"type": "http.response.body", "body": body})


def sse(chunks: list[dict[str, Any]], done: bool = True) -> tuple[int, str, bytes]:
    """A ``reply`` that streams ``chunks`` as OpenAI-style SSE, ``[DONE]`` last unless ``done`` is false."""
    body = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + (b"data: [DONE]\n\n" if done else b"")
    return 200, "text/event-stream", body
