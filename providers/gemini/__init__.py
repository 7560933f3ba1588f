"""Google Gemini dialect (Gemini Developer API, ``generativelanguage.googleapis.com``, v1beta).

OpenAI chat, legacy completions and embeddings become ``generateContent`` /
``streamGenerateContent?alt=sse`` / ``embedContent`` / ``batchEmbedContents`` calls, and the
answers come back in OpenAI's shapes. The key travels in ``x-goog-api-key``, never in the URL.

Every OpenAI request field is either translated or ignored by the table (``params.py``: a field
that cannot change the output is listed without a target), or refused with a 400 naming it:
nothing is dropped silently. References: https://ai.google.dev/api/generate-content,
https://ai.google.dev/api/embeddings, https://ai.google.dev/gemini-api/docs/function-calling.

Modules: ``params`` (the table), ``request`` (turns, tools, formats) and ``content`` (message
parts), ``response``, ``stream``, ``errors``, ``embeddings``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson

from gateway.errors import GatewayError
from gateway.wire.types import CHAT, COMPLETIONS, EMBEDDINGS, UpstreamRequest
from providers.base import Adapter, Capabilities, StreamTranslator, auth_headers
from providers.gemini import embeddings, errors, request, response
from providers.gemini.errors import OVERFLOW_WORDINGS
from providers.gemini.request import ONE, GeminiReply
from providers.gemini.stream import GeminiStream

if TYPE_CHECKING:
    from gateway.config import ProviderConfig
    from providers.base import CallContext, Target

__all__ = ["GeminiAdapter", "GeminiReply", "GeminiStream"]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"

# The model becomes one path segment followed by ":method": a '/', '?', '#', ':', '%' or '..'
# could change which resource or method is called, so anything else is refused.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class GeminiAdapter(Adapter):
    kind = "gemini"
    capabilities = Capabilities(
        endpoints=frozenset({CHAT, COMPLETIONS, EMBEDDINGS}),
        overflow_wordings=OVERFLOW_WORDINGS,
        keeps_thought_signatures=True,
    )

    def __init__(self, name: str, cfg: ProviderConfig) -> None:
        super().__init__(name, cfg)
        self.base_url = (cfg.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._headers = auth_headers(cfg, "x-goog-api-key", base={"content-type": "application/json"})

    def build(self, endpoint: str, body: dict[str, Any], target: Target, ctx: CallContext) -> UpstreamRequest:
        model = self.model_path(target.upstream_model)
        if endpoint == EMBEDDINGS:
            method, payload = embeddings.embed_request(self, body, model, ctx)
            return UpstreamRequest("POST", self._url(model, method), dict(self._headers), orjson.dumps(payload))
        out = request.generate_body(self, endpoint, body)
        ctx.signatures = None  # an earlier attempt's answer never reached the client
        n = out["generationConfig"].get("candidateCount", 1) if "generationConfig" in out else 1
        ctx.reply = ONE if n == 1 else GeminiReply(n=n)
        stream = body.get("stream") is True
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        headers = dict(self._headers)
        if stream:
            headers["accept"] = "text/event-stream"
        return UpstreamRequest("POST", self._url(model, method), headers, orjson.dumps(out), stream)

    def model_path(self, model: str) -> str:
        """The upstream model name as a safe path segment (Google's ``models/`` prefix allowed)."""
        name = model.removeprefix("models/")
        if not _MODEL_NAME.fullmatch(name) or ".." in name:
            raise GatewayError(
                400,
                f"Invalid model name {model!r} for provider '{self.name}': Gemini model names may hold only "
                "letters, digits, '.', '_' and '-'.",
                param="model",
                code="invalid_value",
            )
        return name

    def _url(self, model: str, method: str) -> str:
        return f"{self.base_url}/{API_VERSION}/models/{model}:{method}"

    def parse_response(self, endpoint: str, payload: bytes, ctx: CallContext) -> dict[str, Any]:
        obj = self.json_object(payload, "body is not JSON", "the body is not a JSON object")
        if endpoint == EMBEDDINGS:
            return embeddings.embeddings(self, obj, ctx)
        return response.answer(self, endpoint, obj, ctx)

    def stream_translator(self, endpoint: str, ctx: CallContext) -> StreamTranslator:
        return GeminiStream(self, endpoint, ctx)

    def parse_error(self, status: int, payload: bytes) -> GatewayError:
        return errors.parse_error(self, status, payload)
