"""The adapter interface every dialect implements (DESIGN §2).

An adapter is pure translation: OpenAI-shaped request dict in, ``UpstreamRequest`` out;
upstream payload in, OpenAI-shaped dict out; upstream SSE events in, OpenAI chunk payloads
out. No I/O, so each one is tested with plain dicts and documented examples.
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from gateway.errors import GatewayError
from gateway.wire.types import CHAT, COMPLETIONS, EMBEDDINGS, SSEEvent, UpstreamRequest

if TYPE_CHECKING:
    from gateway.config import ProviderConfig

__all__ = ["CHAT", "COMPLETIONS", "EMBEDDINGS", "SSEEvent", "UpstreamRequest"]


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes within a provider: the upstream model and its per-model facts."""

    upstream_model: str
    # Used when the dialect requires a completion budget (Anthropic) and the request gave none.
    default_max_tokens: int | None = None


@dataclass(slots=True)
class CallContext:
    """What a translator needs to know about the client's side of the call."""

    client_model: str  # the name the client asked for; every response carries it
    include_usage: bool = False  # the client asked for the usage chunk of a stream
    request_id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    # Endpoint-specific extras an adapter stashes in build_request for the way back
    # (e.g. how many prompts a mapped completions call had). ``usage_estimated: True`` tells
    # the accounting that the usage an adapter returns is its own estimate.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Capabilities:
    endpoints: frozenset[str]
    # Understands `context_length_exceeded_behavior` itself (Fireworks): the gateway forwards
    # it and does not pre-check.
    native_overflow: bool = False


class StreamTranslator:
    """Turns upstream SSE events into OpenAI chunk payloads (JSON bytes, no ``data:`` framing).

    ``feed`` returns the payloads to send, possibly none. ``usage`` holds the upstream's
    token usage once seen; ``finished`` turns true at the dialect's proper end of stream.
    A mid-stream upstream error raises ``GatewayError``. The relay writes ``[DONE]``.
    """

    usage: dict[str, Any] | None = None
    finished: bool = False
    # Content-bearing chunks seen: the fallback estimate of completion tokens.
    content_chunks: int = 0

    def feed(self, event: SSEEvent) -> list[bytes]:
        raise NotImplementedError


class Adapter:
    """Base class: holds the provider's name and config; subclasses implement the dialect."""

    kind = "base"
    capabilities = Capabilities(endpoints=frozenset())

    def __init__(self, name: str, cfg: ProviderConfig) -> None:
        self.name = name
        self.cfg = cfg

    def build_request(self, endpoint: str, body: dict[str, Any], target: Target, ctx: CallContext) -> UpstreamRequest:
        raise NotImplementedError

    def parse_response(self, endpoint: str, payload: bytes, ctx: CallContext) -> dict[str, Any]:
        raise NotImplementedError

    def stream_translator(self, endpoint: str, ctx: CallContext) -> StreamTranslator:
        raise NotImplementedError

    def parse_error(self, status: int, payload: bytes) -> GatewayError:
        raise NotImplementedError

    # Client APIs this provider serves itself (``"responses"``, ``"messages"``): it then gets the
    # client's body as sent (only the model rewritten) and its answer is relayed as it comes.
    native_apis: frozenset[str] = frozenset()

    def native_request(self, api: str, body: bytes, target: Target, client: Any) -> UpstreamRequest:
        """The upstream request for a natively served client API; ``client`` has the client's
        ``anthropic_version`` and ``anthropic_beta`` header values (bytes or None)."""
        raise self.endpoint_unsupported(api)

    # Shared helpers for subclasses -------------------------------------------------------

    def unsupported(self, param: str, why: str = "") -> GatewayError:
        """The 400 for a parameter this provider cannot honour: never silently dropped."""
        msg = f"The parameter '{param}' is not supported by provider '{self.name}' ({self.kind})"
        return GatewayError(400, msg + (f": {why}" if why else "."), param=param, code="unsupported_parameter")

    def endpoint_unsupported(self, endpoint: str) -> GatewayError:
        return GatewayError(
            400,
            f"Provider '{self.name}' ({self.kind}) does not support the {endpoint} endpoint.",
            code="unsupported_endpoint",
        )

    def bad_response(self, why: str) -> GatewayError:
        return GatewayError(
            502, f"{self.name}: the upstream sent an invalid response: {why}", code="upstream_bad_response"
        )

    def upstream_error(
        self, status: int, message: str, type_: Any = None, code: Any = None, param: Any = None
    ) -> GatewayError:
        """An upstream HTTP error: its status and message kept, prefixed with the provider name, and
        this provider's secrets taken out (GatewayError keeps the fields' types OpenAI's)."""
        err = GatewayError(
            status, f"{self.name}: {message}", type=type_, code=code, param=param, reason=f"http_{status}"
        )
        return self.redact(err)

    def redact(self, err: GatewayError) -> GatewayError:
        """``err`` (in place) without this provider's configured secrets: for the errors a translator
        built from the upstream's words (a mid-stream error event) rather than through ``upstream_error``."""
        err.message = self._redacted(err.message)
        if err.code is not None:
            err.code = self._redacted(err.code)
        if err.param is not None:
            err.param = self._redacted(err.param)
        return err

    def _redacted(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text

    @functools.cached_property
    def secrets(self) -> tuple[str, ...]:
        """The credentials in this provider's config (an upstream may echo one back: "Incorrect API
        key provided: ..."), longest first; values too short to be secrets are left alone."""
        cfg = self.cfg
        found = [getattr(cfg, f, None) for f in ("api_key", "aws_access_key_id", "aws_secret_access_key")]
        values = [v.get_secret_value() if hasattr(v, "get_secret_value") else v for v in found]
        values += list((getattr(cfg, "headers", None) or {}).values())
        return tuple(sorted({v for v in values if isinstance(v, str) and len(v) >= 8}, key=len, reverse=True))


def load_json(payload: bytes, adapter: Adapter) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise adapter.bad_response("body is not JSON") from None


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def chat_chunk(ctx: CallContext, chunk_id: str, choices: list[dict[str, Any]], usage: Any = None) -> dict[str, Any]:
    """An OpenAI ``chat.completion.chunk`` with the client's model name."""
    out: dict[str, Any] = {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": ctx.created,
        "model": ctx.client_model,
        "choices": choices,
    }
    if ctx.include_usage:
        out["usage"] = usage
    return out


def usage_dict(prompt: int, completion: int, **extra: Any) -> dict[str, Any]:
    u: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    u.update(extra)
    return u
