"""Anthropic Messages dialect: OpenAI chat and legacy completions over ``POST /v1/messages``.

Every OpenAI request field goes through one table (``params.py``, applied by ``apply_params``):
it is written to its Anthropic field, or refused with a 400 naming the parameter. A field missing
from the table is refused too: silently dropping what a client asked for would change its
results without telling it. Answers come back as ``chat.completion`` / ``text_completion``;
streams are translated event by event from the documented sequence (message_start,
content_block_start/delta/stop, message_delta, message_stop).

Sources: https://platform.claude.com/docs/en/api/messages,
https://platform.claude.com/docs/en/build-with-claude/streaming,
https://platform.claude.com/docs/en/agents-and-tools/tool-use/implement-tool-use,
https://platform.claude.com/docs/en/build-with-claude/structured-outputs,
https://platform.claude.com/docs/en/api/errors.

Modules: ``params`` (the table), ``request`` (messages, tools, formats) and ``content`` (content
blocks), ``response``, ``stream``, ``errors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from gateway.wire.types import CHAT, COMPLETIONS, UpstreamRequest
from providers.anthropic import errors, request, response
from providers.anthropic.errors import OVERFLOW_WORDINGS
from providers.anthropic.request import JSON_TOOL, AnthropicReply
from providers.anthropic.stream import AnthropicStream
from providers.base import Adapter, Capabilities, StreamTranslator, auth_headers

if TYPE_CHECKING:
    from gateway.config import ProviderConfig
    from gateway.errors import GatewayError
    from providers.base import CallContext, Target

__all__ = ["JSON_TOOL", "AnthropicAdapter", "AnthropicReply", "AnthropicStream"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
_JSON = {"content-type": "application/json", "accept": "application/json"}


class AnthropicAdapter(Adapter):
    kind = "anthropic"
    unlisted_why = "it has no equivalent in Anthropic's Messages API"
    capabilities = Capabilities(endpoints=frozenset({CHAT, COMPLETIONS}), overflow_wordings=OVERFLOW_WORDINGS)

    def __init__(self, name: str, cfg: ProviderConfig) -> None:
        super().__init__(name, cfg)
        base = (cfg.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.url = base.removesuffix("/v1") + "/v1/messages"  # base_url is the origin; tolerate a trailing /v1
        version = {"anthropic-version": cfg.api_version or DEFAULT_VERSION}
        self._headers = auth_headers(cfg, "x-api-key", base=_JSON, fixed=version)

    # Anthropic serves the Messages API itself: the client's body goes as sent.
    native_apis = frozenset({"messages"})

    def native_request(self, api: str, body: bytes, target: Target, client: Any) -> UpstreamRequest:
        if api not in self.native_apis:
            raise self.endpoint_unsupported(api)
        stream = bool(getattr(client, "stream", False))
        return UpstreamRequest("POST", self.url, self.client_headers(client), body, stream)

    def count_tokens_request(self, body: bytes, client: Any) -> UpstreamRequest:
        return UpstreamRequest("POST", self.url + "/count_tokens", self.client_headers(client), body)

    def client_headers(self, client: Any) -> dict[str, str]:
        """Our headers with the client's ``anthropic-version`` and ``anthropic-beta`` (betas and
        versions are the client's business; the key never is)."""
        headers = dict(self._headers)
        version, beta = getattr(client, "anthropic_version", None), getattr(client, "anthropic_beta", None)
        if version:
            headers["anthropic-version"] = version.decode("latin-1")
        if beta:
            headers["anthropic-beta"] = beta.decode("latin-1")
        return headers

    def build(self, endpoint: str, body: dict[str, Any], target: Target, ctx: CallContext) -> UpstreamRequest:
        out = request.build_body(self, endpoint, body, target, ctx)
        return UpstreamRequest("POST", self.url, dict(self._headers), orjson.dumps(out), out.get("stream") is True)

    def parse_response(self, endpoint: str, payload: bytes, ctx: CallContext) -> dict[str, Any]:
        return response.answer(self, endpoint, payload, ctx)

    def stream_translator(self, endpoint: str, ctx: CallContext) -> StreamTranslator:
        return AnthropicStream(self.name, endpoint, ctx)

    def parse_error(self, status: int, payload: bytes) -> GatewayError:
        return errors.parse_error(self, status, payload)
