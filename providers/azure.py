"""Azure OpenAI dialect: OpenAI's wire format behind Azure's URLs, key header and content filters.

Two URL forms (https://learn.microsoft.com/azure/ai-services/openai/reference and
https://learn.microsoft.com/azure/ai-foundry/openai/api-version-lifecycle):

- classic, when ``api_version`` is a dated version:
  ``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=2024-10-21``,
  the deployment being the upstream model;
- v1, when ``api_version`` is unset or ``v1``: ``{endpoint}/openai/v1/chat/completions`` with
  the deployment as ``model`` in the body (``preview``/``latest`` select v1 with that
  ``api-version`` query, as Microsoft's v1 preview examples do).

The key goes in ``api-key``. Streams carry content-filter annotation chunks that OpenAI
clients cannot read (no ``choices``, or choices without ``delta``); ``AzureStream`` drops
or completes them. Non-streamed answers keep Azure's documented ``prompt_filter_results``
and ``content_filter_results`` as they are.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from gateway.errors import GatewayError
from gateway.wire.types import COMPLETIONS, SSEEvent
from providers.base import FilesAPI, StreamTranslator, auth_headers
from providers.openai import JSON_HEADERS, PATHS, OpenAIAdapter, OpenAIStream

if TYPE_CHECKING:
    from gateway.config import ProviderConfig
    from providers.base import CallContext, Target, UpstreamRequest

# A deployment name goes into the URL path, so it must not be able to leave its segment:
# Azure names are letters, digits, '-', '_' and '.', which this allows and nothing else.
_DEPLOYMENT_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_V1_VERSIONS = {None, "", "v1"}
_V1_QUERY_VERSIONS = {"preview", "latest"}
_STREAM_OPTIONS_SINCE = "2024-09-01"

_EMPTY_CHOICES_RE = re.compile(rb'"choices"\s*:\s*\[\s*\]')
_USAGE_OBJ_RE = re.compile(rb'"usage"\s*:\s*\{')
# Keys only: a JSON string value cannot contain a bare quote, so `"delta":` is always a key.
_DELTA_KEY_RE = re.compile(rb'"delta"\s*:')
_TEXT_KEY_RE = re.compile(rb'"text"\s*:')
_ID_RE = re.compile(rb'^\s*\{\s*"id"\s*:\s*"((?:[^"\\]|\\.)+)"')
_CREATED_RE = re.compile(rb'"created"\s*:\s*([1-9][0-9]*)')

# Azure's own context-overflow wording (the GPT-5 input limit), beside OpenAI's.
_OVERFLOW = re.compile(
    r"Input tokens exceed the configured limit of (?P<w>\d+) tokens\. Your messages resulted in (?P<p>\d+) tokens"
)


class AzureStream(OpenAIStream):
    """OpenAI relay plus Azure's annotation chunks made safe for OpenAI clients.

    A chunk with empty ``choices`` and no usage (the prompt annotation) is dropped; a chunk
    whose choices lack ``delta`` (chat) or ``text`` (completions), i.e. a completion
    annotation, gets the missing field and the stream's id/object/created, so its
    ``content_filter_results`` and a ``finish_reason: content_filter`` still reach the client.
    """

    __slots__ = ("chunk_id", "completions", "created")
    feed_chunk = None  # annotation chunks need a look at each event

    def __init__(self, ctx: CallContext, completions: bool) -> None:
        super().__init__(ctx)
        self.completions = completions
        self.chunk_id: str | None = None
        self.created = ctx.created

    def feed(self, event: SSEEvent) -> list[bytes]:
        data = event.data
        if data[:1] != b"{":
            # Microsoft's own samples show `data: [DONE] ` with a trailing blank.
            return super().feed(SSEEvent(event.event, data.strip()))
        if _EMPTY_CHOICES_RE.search(data):
            return super().feed(event) if _USAGE_OBJ_RE.search(data) else []
        if self.chunk_id is None:
            head = _ID_RE.match(data)
            created = _CREATED_RE.search(data)
            if head and created:
                self.chunk_id, self.created = head.group(1).decode(), int(created.group(1))
        key_re = _TEXT_KEY_RE if self.completions else _DELTA_KEY_RE
        if b'"choices"' in data and not key_re.search(data):
            return [self._annotation(data)]
        return super().feed(event)

    def _annotation(self, data: bytes) -> bytes:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise GatewayError(502, "upstream sent a malformed stream chunk", code="upstream_bad_response") from None
        for choice in obj.get("choices") or ():
            if isinstance(choice, dict):
                if self.completions:
                    choice.setdefault("text", "")
                else:
                    choice.setdefault("delta", {})
        obj["id"] = obj.get("id") or self.chunk_id or self.ctx.request_id
        obj["object"] = "text_completion" if self.completions else "chat.completion.chunk"
        obj["created"] = obj.get("created") or self.created
        obj["model"] = self.ctx.client_model
        if not self.ctx.include_usage:
            obj.pop("usage", None)
        return orjson.dumps(obj)


class AzureAdapter(OpenAIAdapter):
    kind = "azure"
    capabilities = dataclasses.replace(
        OpenAIAdapter.capabilities, overflow_wordings=(*OpenAIAdapter.capabilities.overflow_wordings, _OVERFLOW)
    )

    def __init__(self, name: str, cfg: ProviderConfig) -> None:
        super().__init__(name, cfg)
        self.base_url = _resource_endpoint(self.base_url)
        version = cfg.api_version
        self.classic = version not in _V1_VERSIONS and version not in _V1_QUERY_VERSIONS
        query = f"?api-version={quote(version, safe='')}" if version and version not in _V1_VERSIONS else ""
        self._query = query
        # stream_options arrived in api-version 2024-09-01-preview; older dated versions refuse it.
        self.stream_usage = not self.classic or version >= _STREAM_OPTIONS_SINCE
        self._urls = {ep: f"{self.base_url}/openai/v1{path}{query}" for ep, path in PATHS.items()}
        # Azure authenticates with `api-key`; an `authorization` the operator configured
        # (e.g. a Microsoft Entra token) is kept, and none is derived from api_key.
        self._headers = auth_headers(cfg, "api-key", base=JSON_HEADERS)

    def files_api(self) -> FilesAPI:
        """``{endpoint}/openai/v1/files`` for the v1 API (``?api-version=preview|latest`` for those), else the
        classic ``{endpoint}/openai/files?api-version=V``, with the ``api-key`` header
        (https://learn.microsoft.com/en-us/rest/api/azureopenai/files/upload)."""
        version = self.cfg.api_version
        query = (("api-version", str(version)),) if version not in _V1_VERSIONS else ()
        base = self.base_url + ("/openai" if self.classic else "/openai/v1")
        return FilesAPI(base, auth_headers(self.cfg, "api-key"), query)

    def url_for(self, endpoint: str, target: Target) -> str:
        if not self.classic:
            return self._urls[endpoint]
        deployment = target.upstream_model
        if not _DEPLOYMENT_RE.fullmatch(deployment) or deployment in (".", ".."):
            raise GatewayError(
                400,
                f"'{deployment}' is not a valid Azure deployment name for provider '{self.name}' "
                "(letters, digits, '-', '_' and '.' only).",
                param="model",
                code="invalid_deployment",
            )
        return f"{self.base_url}/openai/deployments/{deployment}{PATHS[endpoint]}{self._query}"

    def responses_url(self) -> str:
        # The Responses API is on the v1 surface only; a dated api-version goes as the query.
        return (
            f"{self.base_url}/openai/v1/responses"
            if not self.classic
            else f"{self.base_url}/openai/responses{self._query}"
        )

    def build(self, endpoint: str, body: dict[str, Any], target: Target, ctx: CallContext) -> UpstreamRequest:
        req = super().build(endpoint, body, target, ctx)
        if req.stream and not self.stream_usage and not ctx.include_usage:
            # Usage is then estimated from the stream, as for any upstream that reports none.
            body.pop("stream_options", None)
            req.body = orjson.dumps(body)
        return req

    def stream_translator(self, endpoint: str, ctx: CallContext) -> StreamTranslator:
        return AzureStream(ctx, completions=endpoint == COMPLETIONS)


def _resource_endpoint(base_url: str) -> str:
    """``https://NAME.openai.azure.com`` from a base URL that may end in /openai or /openai/v1."""
    url = base_url.rstrip("/")
    for suffix in ("/openai/v1", "/openai"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url
