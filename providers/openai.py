"""OpenAI dialect: OpenAI itself and every OpenAI-compatible server (vLLM, Ollama, Together...).

Requests pass through with only ``model`` replaced and streams forced to report usage.
Stream chunks are relayed as the upstream's own bytes; only the ``model`` field is rewritten
(one regex substitution) and a usage-only chunk the client did not ask for is held back.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from gateway.errors import GatewayError
from gateway.wire.types import CHAT, COMPLETIONS, DONE, EMBEDDINGS, SSEEvent, UpstreamRequest
from providers.base import Adapter, Capabilities, FilesAPI, StreamTranslator, auth_headers, load_json, try_json

if TYPE_CHECKING:
    from gateway.config import ProviderConfig
    from providers.base import CallContext, Target

PATHS = {CHAT: "/chat/completions", COMPLETIONS: "/completions", EMBEDDINGS: "/embeddings"}

# The first "model" member of a chunk; JSON strings cannot hold a bare quote, so this can't
# match inside content.
_MODEL_RE = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')
_USAGE_OBJ_RE = re.compile(rb'"usage"\s*:\s*\{')
_ERROR_HEAD_RE = re.compile(rb'^\s*\{\s*"error"\s*:')
_USAGE_NULL_RE = re.compile(rb',\s*"usage"\s*:\s*null')
_USAGE_NULL = b',"usage":null'
JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}

# The context-overflow 400 as OpenAI, Azure OpenAI and vLLM word it -> (window, prompt, completion)
# (see ``Capabilities.overflow_wordings``). Wordings with "at least" (vLLM >= 0.11) or "about"
# (OpenRouter) are not exact and not listed.
OVERFLOW_WORDINGS = tuple(
    re.compile(p)
    for p in (
        # OpenAI, Azure OpenAI, vLLM < 0.11 (chat)
        r"maximum context length is (?P<w>\d+) tokens\. However, you requested (?P<t>\d+) tokens "
        r"\((?P<p>\d+) in the messages, (?P<c>\d+) in the completion\)",
        r"maximum context length is (?P<w>\d+) tokens\. However, you requested (?P<t>\d+) tokens "
        r"\((?P<p>\d+) in the messages, (?P<f>\d+) in the functions, and (?P<c>\d+) in the completion\)",
        r"maximum context length is (?P<w>\d+) tokens\. However, your messages resulted in (?P<t>\d+) tokens "
        r"\((?P<p>\d+) in the messages, (?P<f>\d+) in the functions\)",
        r"maximum context length is (?P<w>\d+) tokens\. However, your messages resulted in (?P<p>\d+) tokens\.",
        # OpenAI and Azure legacy completions
        r"maximum context length is (?P<w>\d+) tokens, however you requested (?P<t>\d+) tokens "
        r"\((?P<p>\d+) in your prompt; (?P<c>\d+) for the completion\)",
        # vLLM (serving_engine.py): prompt alone, then prompt + max_tokens
        r"maximum context length is (?P<w>\d+) tokens\. However, your request has (?P<p>\d+) input tokens\.",
        r"is too large: (?P<c>\d+)\. This model's maximum context length is (?P<w>\d+) tokens "
        r"and your request has (?P<p>\d+) input tokens",
    )
)


class OpenAIStream(StreamTranslator):
    __slots__ = ("content_chunks", "ctx", "finished", "model_bytes", "usage")

    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx
        self.model_bytes = b'"model":' + orjson.dumps(ctx.client_model)
        self.usage = None
        self.finished = False
        self.content_chunks = 0

    def feed(self, event: SSEEvent) -> list[bytes]:
        data = event.data
        if data == b"[DONE]" or data.strip() == b"[DONE]":
            self.finished = True
            return []
        if not data or data[:1] not in b"{ \t\r\n":
            return []  # keep-alive or a non-JSON line some servers send; nothing to relay
        if b'"error"' in data and _ERROR_HEAD_RE.match(data):
            raise self._error(data)
        if b'"usage"' in data:
            if _USAGE_OBJ_RE.search(data):
                return self._with_usage(data)
            if not self.ctx.include_usage:
                # We asked for usage on the client's behalf; OpenAI sends no usage field then.
                stripped = data.replace(_USAGE_NULL, b"", 1)
                data = (
                    stripped
                    if stripped is not data and len(stripped) < len(data)
                    else _USAGE_NULL_RE.sub(b"", data, count=1)
                )
        self.content_chunks += 1
        return [self._rewrite_model(data)]

    def feed_chunk(self, chunk: bytes) -> bytes | None:  # type: ignore[override]
        """A read of whole one-line ``data: {...}`` events is relayed as one buffer: the model renamed
        by one replace, usage found by search, nothing parsed (the usage event goes through the event
        path). Any other read (a split event, other lines, an error, spaced JSON) returns None, for
        the event-by-event path. Each search is a pass over the read (about 0.5 ns a byte): there are
        four or five, and every check that can be read off a pass already made is read off it."""
        if chunk[:7] != b"data: {" or chunk[-2:] != b"\n\n" or b"\r" in chunk:
            return None
        # Every newline belongs to an event's "\n\n" followed by the next "data: {": one line each,
        # each a JSON object (so no [DONE] in between); the end marker may close the read.
        events = chunk.count(b"\n\ndata: {") + 1
        newlines = chunk.count(b"\n")
        done = newlines == 2 * events + 2 and chunk.endswith(DONE)
        if done:
            chunk = chunk[: -len(DONE)]
        elif newlines != 2 * events:
            return None
        # OpenAI's usage chunk is the stream's last event: looked for in the read's last event only
        # (a usage object anywhere else fails the usage:null count below).
        cut = chunk.rfind(b"\n\n", 0, len(chunk) - 2)
        cut = cut + 2 if cut >= 0 else 0
        tail = b""
        if chunk.find(b'"usage":{', cut) >= 0:
            chunk, tail = chunk[:cut], chunk[cut:]
            events -= 1
        head = self._relay_head(chunk, events) if events else b""
        if head is None:
            return None
        if tail:
            head += b"".join([b"data: " + p + b"\n\n" for p in self.feed(SSEEvent(None, tail[6:-2]))])
        if done:
            self.finished = True
        return head

    def _relay_head(self, chunk: bytes, events: int) -> bytes | None:
        """``events`` events, each with ``"usage":null`` or no usage field at all and each naming the
        model once, in the compact form: renamed by one replace; None to go one by one. An error
        event names no model, so the count of renamed models sends its read to the event path."""
        # split+join rather than replace: one search pass instead of two, and the count comes free.
        if self.ctx.include_usage:
            nulls = chunk.count(_USAGE_NULL)
        else:
            # We asked for usage on the client's behalf; OpenAI sends no usage field then.
            parts = chunk.split(_USAGE_NULL)
            nulls = len(parts) - 1
            if nulls:
                chunk = b"".join(parts)
        if nulls != events and (nulls or b'"usage"' in chunk):
            return None  # a usage object, or a spaced form: the event path sees it
        i = chunk.find(b'"model":"')
        if i < 0:
            if b'"model"' in chunk or b'"error"' in chunk:
                return None
        else:
            j = chunk.find(b'"', i + 9)
            old = chunk[i : j + 1]
            if j < 0 or old[-2:-1] == b"\\":
                return None  # an escaped quote: the per-event regex renames it
            parts = chunk.split(old)
            if len(parts) != events + 1:
                return None  # not every event names that model once, the same way
            if old != self.model_bytes:
                chunk = self.model_bytes.join(parts)
        self.content_chunks += events
        return chunk

    def _rewrite_model(self, data: bytes) -> bytes:
        # The common compact form by slicing; anything else (spaces, escapes) by the regex.
        i = data.find(b'"model":"')
        if i >= 0:
            j = data.find(b'"', i + 9)
            if j > 0 and data[j - 1 : j] != b"\\":
                return data[:i] + self.model_bytes + data[j + 1 :]
        return _MODEL_RE.sub(self._model_sub, data, count=1)

    def _model_sub(self, _m: re.Match[bytes]) -> bytes:
        return self.model_bytes

    def _with_usage(self, data: bytes) -> list[bytes]:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise GatewayError(502, "upstream sent a malformed stream chunk", code="upstream_bad_response") from None
        if isinstance(obj, dict) and isinstance(obj.get("usage"), dict):
            self.usage = obj["usage"]
            if obj.get("choices"):
                self.content_chunks += 1
            if not self.ctx.include_usage:
                if not obj.get("choices"):
                    return []  # the usage-only chunk we asked for on the client's behalf
                del obj["usage"]
            obj["model"] = self.ctx.client_model
            return [orjson.dumps(obj)]
        return [_MODEL_RE.sub(self._model_sub, data, count=1)]

    @staticmethod
    def _error(data: bytes) -> GatewayError:
        try:
            err = orjson.loads(data)["error"]
            msg = str(err.get("message") or "upstream error")
            return GatewayError(
                502, msg, type=err.get("type") or "upstream_error", code=err.get("code") or "upstream_error"
            )
        except Exception:
            return GatewayError(502, "upstream sent an error mid-stream", code="upstream_error")


class OpenAIAdapter(Adapter):
    kind = "openai"
    capabilities = Capabilities(
        endpoints=frozenset({CHAT, COMPLETIONS, EMBEDDINGS}),
        openai_tokenizers=True,
        overflow_wordings=OVERFLOW_WORDINGS,
        files=True,
        needs_base_url=True,  # any OpenAI-compatible server: there is no one default
    )

    def __init__(self, name: str, cfg: ProviderConfig) -> None:
        super().__init__(name, cfg)
        self.base_url = (cfg.base_url or "").rstrip("/")
        self._headers = auth_headers(cfg, "authorization", "Bearer ", base=JSON_HEADERS)
        self._urls = {ep: self.base_url + path for ep, path in PATHS.items()}
        # The Responses API is served by OpenAI itself (and Azure); an OpenAI-compatible server
        # without it is configured ``responses: translate``.
        mode = getattr(cfg, "responses", None) or self.responses_default
        self.native_apis = frozenset({"responses"}) if mode == "native" else frozenset()

    responses_default = "native"

    def native_request(self, api: str, body: bytes, target: Target, client: Any) -> UpstreamRequest:
        if api not in self.native_apis:
            raise self.endpoint_unsupported(api)
        return UpstreamRequest(
            "POST", self.responses_url(), dict(self._headers), body, bool(getattr(client, "stream", False))
        )

    def responses_url(self) -> str:
        return self.base_url + "/responses"

    def response_object_request(
        self, method: str, upstream_id: str, suffix: str = "", query: str = ""
    ) -> UpstreamRequest:
        """``GET|DELETE /responses/{id}[/input_items][?query]`` for a natively served response."""
        url, _, base_query = self.responses_url().partition("?")
        url += "/" + quote(upstream_id, safe="") + suffix
        q = "&".join(x for x in (base_query, query) if x)
        return UpstreamRequest(method, url + ("?" + q if q else ""), dict(self._headers), None)

    def url_for(self, endpoint: str, target: Target) -> str:
        return self._urls[endpoint]

    def files_api(self) -> FilesAPI | None:
        """``{base_url}/files`` and its siblings, with the same Bearer key."""
        if not self.capabilities.files:
            return None
        return FilesAPI(self.base_url, auth_headers(self.cfg, "authorization", "Bearer "))

    def build(self, endpoint: str, body: dict[str, Any], target: Target, ctx: CallContext) -> UpstreamRequest:
        body["model"] = target.upstream_model
        stream = body.get("stream") is True
        if stream:
            opts = body.get("stream_options")
            body["stream_options"] = (
                {**opts, "include_usage": True} if isinstance(opts, dict) else {"include_usage": True}
            )
        return UpstreamRequest("POST", self.url_for(endpoint, target), dict(self._headers), orjson.dumps(body), stream)

    def parse_response(self, endpoint: str, payload: bytes, ctx: CallContext) -> dict[str, Any]:
        obj = load_json(payload, self)
        key = "data" if endpoint == EMBEDDINGS else "choices"
        if not isinstance(obj, dict) or not isinstance(obj.get(key), list):
            raise self.bad_response(f"no '{key}' list")
        obj["model"] = ctx.client_model
        return obj

    def stream_translator(self, endpoint: str, ctx: CallContext) -> StreamTranslator:
        return OpenAIStream(ctx)

    def parse_error(self, status: int, payload: bytes) -> GatewayError:
        err = try_json(payload)
        if isinstance(err, dict) and isinstance(err.get("error"), dict):
            e = err["error"]
            return self.upstream_error(
                status,
                str(e.get("message") or f"HTTP {status}"),
                e.get("type") or self.status_types.get(status),
                _str_or_none(e.get("code")),
                _str_or_none(e.get("param")),
            )
        if isinstance(err, dict) and isinstance(err.get("error"), str):  # vLLM/Ollama variants
            return self.upstream_error(status, err["error"], self.status_types.get(status))
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return self.upstream_error(status, err["message"], self.status_types.get(status))
        return self.plain_error(status, payload)


def _str_or_none(v: Any) -> str | None:
    return None if v is None else str(v)
