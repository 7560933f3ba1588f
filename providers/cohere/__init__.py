"""Cohere v2 dialect: ``/v2/chat`` and ``/v2/embed`` behind OpenAI's chat, completions and embeddings.

Reference: https://docs.cohere.com/reference/chat (request, response, finish reasons, usage),
https://docs.cohere.com/reference/chat-stream and https://docs.cohere.com/v2/docs/streaming
(stream events), https://docs.cohere.com/v2/docs/tool-use-overview (tool messages),
https://docs.cohere.com/reference/embed (embeddings). The request side is one table,
``params.py``; every other OpenAI field is refused with a 400 naming it, never dropped.

Decisions where the two APIs differ:
- usage comes from ``usage.tokens`` (what the model read and wrote, like OpenAI's counts and
  what context budgets are about); ``usage.billed_units`` is the fallback when it is missing;
- finish ``ERROR``/``TIMEOUT`` is an upstream failure (502, or an SSE error mid-stream), not a
  clean ``stop`` that would pass a broken answer off as complete;
- ``top_p`` is clamped into Cohere's ``p`` range [0.01, 0.99], so OpenAI's common ``1.0`` works;
- a forced function (``tool_choice: {"function": ...}``) becomes ``REQUIRED`` with only that tool;
- ``tool_plan`` (Cohere's text before tool calls) is the assistant ``content``, and back again;
- embeddings: ``input_type`` is the client's extra field if given, else ``search_document``;
  base64 is encoded here from floats, exactly as OpenAI encodes (little-endian float32).

Modules: ``params`` (the table), ``request`` (messages, tools, formats), ``response``,
``stream``, ``errors``, ``embeddings``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from gateway.wire.types import CHAT, COMPLETIONS, EMBEDDINGS, UpstreamRequest
from providers.base import Adapter, Capabilities, StreamTranslator, auth_headers
from providers.cohere import embeddings, errors, request, response
from providers.cohere.embeddings import CohereReply
from providers.cohere.stream import CohereStream

if TYPE_CHECKING:
    from gateway.config import ProviderConfig
    from gateway.errors import GatewayError
    from providers.base import CallContext, Target

__all__ = ["CohereAdapter", "CohereReply", "CohereStream"]

DEFAULT_BASE_URL = "https://api.cohere.com"
PATHS = {CHAT: "/v2/chat", COMPLETIONS: "/v2/chat", EMBEDDINGS: "/v2/embed"}


class CohereAdapter(Adapter):
    kind = "cohere"
    capabilities = Capabilities(endpoints=frozenset({CHAT, COMPLETIONS, EMBEDDINGS}))

    def __init__(self, name: str, cfg: ProviderConfig) -> None:
        super().__init__(name, cfg)
        base = (cfg.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._urls = {ep: base + path for ep, path in PATHS.items()}
        self._headers = auth_headers(cfg, "authorization", "Bearer ", base={"content-type": "application/json"})

    def build(self, endpoint: str, body: dict[str, Any], target: Target, ctx: CallContext) -> UpstreamRequest:
        if endpoint == EMBEDDINGS:
            out = embeddings.embed_body(self, body, target, ctx)
        else:
            out = request.chat_body(self, endpoint, body, target)
        stream = out.get("stream") is True
        headers = dict(self._headers)
        headers["accept"] = "text/event-stream" if stream else "application/json"
        return UpstreamRequest("POST", self._urls[endpoint], headers, orjson.dumps(out), stream)

    def parse_response(self, endpoint: str, payload: bytes, ctx: CallContext) -> dict[str, Any]:
        obj = self.json_object(payload, "body is not JSON", "not a JSON object")
        if endpoint == EMBEDDINGS:
            return embeddings.embeddings(self, obj, ctx)
        return response.answer(self, endpoint, obj, ctx)

    def stream_translator(self, endpoint: str, ctx: CallContext) -> StreamTranslator:
        return CohereStream(self, ctx, completions=endpoint == COMPLETIONS)

    def parse_error(self, status: int, payload: bytes) -> GatewayError:
        return errors.parse_error(self, status, payload)
