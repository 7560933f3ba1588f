"""The adapter interface every dialect implements, and what the dialects share (README "Architecture").

An adapter is pure translation: OpenAI-shaped request dict in, ``UpstreamRequest`` out;
upstream payload in, OpenAI-shaped dict out; upstream SSE events in, OpenAI chunk payloads
out. No I/O, so each one is tested with plain dicts and documented examples.

A provider is one unit: its facts (endpoints, overflow handling, tokenizer family, overflow
wordings, files API) are on its ``Capabilities`` and methods, so the gateway names no kind.
The request side of a dialect is one table of ``Param`` records applied by ``apply_params``.
"""

from __future__ import annotations

import base64
import functools
import re
import struct
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

import orjson

from gateway.errors import GatewayError
from gateway.wire.types import CHAT, COMPLETIONS, EMBEDDINGS, SSEEvent, UpstreamRequest

if TYPE_CHECKING:
    from gateway.config import ProviderConfig

__all__ = ["CHAT", "COMPLETIONS", "EMBEDDINGS", "SSEEvent", "UpstreamRequest"]

# OpenAI's finish reasons: what every dialect's ``FINISH`` table maps its own reasons to.
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]

# Upstream HTTP status -> OpenAI error type, when the upstream's body names none. (The gateway's
# own errors take theirs from gateway/errors.py, where 401 and 404 keep OpenAI's own types.)
STATUS_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
}


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
    # The adapter's own record of the request, made by build_request and read on the way back
    # (each dialect's ``*Reply`` dataclass; None for dialects that need nothing).
    reply: Any = None
    # The usage the adapter returns is its own estimate (the upstream reports none).
    usage_estimated: bool = False
    # Tool-call id -> the thought signature handed out with it in this answer (only adapters whose
    # ``Capabilities.keeps_thought_signatures`` fill it; the pipeline keeps them for the replay).
    signatures: dict[str, str] | None = None
    # The chunks go to another client API's encoder, which wants them as dicts: a translator that
    # builds its chunks hands them over as they are (``chunk_out``) instead of serialising them.
    chunk_dicts: bool = False


@dataclass(frozen=True, slots=True)
class FilesAPI:
    """Where a provider's OpenAI-shaped files, fine-tuning and batch APIs live, and how to call them."""

    base: str  # ``/files``, ``/batches``... are appended to it
    headers: Mapping[str, str]  # the credentials and the operator's headers (no content type)
    query: tuple[tuple[str, str], ...] = ()  # appended to every URL (Azure's api-version)


@dataclass(frozen=True, slots=True)
class Capabilities:
    endpoints: frozenset[str]
    # Understands `context_length_exceeded_behavior` itself (Fireworks): the gateway forwards
    # it and does not pre-check.
    native_overflow: bool = False
    # The behaviour when neither the model nor the provider entry names one (README "Context-window overflow").
    overflow_default: Literal["truncate", "error"] = "error"
    # Its model names are OpenAI's, whose tiktoken encodings are exact (OpenAI, Azure); otherwise
    # only estimates are possible unless the config names a tokenizer.
    openai_tokenizers: bool = False
    # The upstream's wordings of its own context-overflow 400: regexes with the named groups w
    # (window), p (prompt tokens), c (requested completion), t (a stated total, checked) and f
    # (function tokens, folded into the prompt). Only exact wordings belong here.
    overflow_wordings: tuple[re.Pattern[str], ...] = ()
    # Serves OpenAI's files, fine-tuning and batch APIs (``Adapter.files_api``); ``files: true`` allowed.
    files: bool = False
    # The config must give a base_url (there is no public default).
    needs_base_url: bool = False
    # The upstream wants each tool call it made replayed with its thought signature (Gemini), which
    # many clients drop: the adapter reports the ones it hands out (``CallContext.signatures``) and
    # the pipeline keeps them and puts them back into replayed calls (gateway/pipeline/signatures.py).
    keeps_thought_signatures: bool = False


def overflow_numbers(wordings: tuple[re.Pattern[str], ...], message: str) -> tuple[int, int, int] | None:
    """(window, prompt tokens, requested completion) from an overflow message, by the first wording
    that matches; the completion is 0 when the message names none. None when no wording matches or
    the numbers do not add up."""
    for rx in wordings:
        m = rx.search(message)
        if m is None:
            continue
        g = {k: int(v) for k, v in m.groupdict().items() if v is not None}
        prompt = g["p"] + g.get("f", 0)
        completion = g.get("c", 0)
        if "t" in g and g["t"] != prompt + completion:
            return None
        return g["w"], prompt, completion
    return None


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
    # Optional whole-read fast path: ``feed_chunk(upstream bytes)`` gives the framed bytes to relay,
    # or None when the read must go event by event (only a dialect whose own framing is the
    # client's, i.e. OpenAI's, can offer it).
    feed_chunk: Callable[[bytes], bytes | None] | None = None

    def feed(self, event: SSEEvent) -> list[bytes]:
        raise NotImplementedError


class Adapter:
    """Base class: holds the provider's name and config; subclasses implement the dialect."""

    kind = "base"
    capabilities = Capabilities(endpoints=frozenset())
    # Upstream status -> OpenAI error type for bodies that name none.
    status_types: ClassVar[Mapping[int, str]] = STATUS_TYPES
    # Added to the 400 for a request field the dialect's table does not list.
    unlisted_why: ClassVar[str] = ""

    def __init__(self, name: str, cfg: ProviderConfig) -> None:
        self.name = name
        self.cfg = cfg

    def build_request(self, endpoint: str, body: dict[str, Any], target: Target, ctx: CallContext) -> UpstreamRequest:
        """The endpoint check every dialect needs, then the dialect's ``build``."""
        if endpoint not in self.capabilities.endpoints:
            raise self.endpoint_unsupported(endpoint)
        ctx.reply = None
        ctx.usage_estimated = False
        return self.build(endpoint, body, target, ctx)

    def build(self, endpoint: str, body: dict[str, Any], target: Target, ctx: CallContext) -> UpstreamRequest:
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

    def parse_overflow(self, message: str) -> tuple[int, int, int] | None:
        """(window, prompt, completion) when ``message`` is this upstream's context-overflow error."""
        return overflow_numbers(self.capabilities.overflow_wordings, message)

    def files_api(self) -> FilesAPI | None:
        """Where this provider's files, fine-tuning and batch APIs are; None when it has none."""
        return None

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

    def json_object(self, data: bytes, not_json: str, not_object: str = "") -> dict[str, Any]:
        """An upstream body's or stream event's JSON object, or the 502 saying why it is not one."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise self.bad_response(not_json) from None
        if not isinstance(obj, dict):
            raise self.bad_response(not_object or not_json)
        return obj

    def plain_error(self, status: int, payload: bytes) -> GatewayError:
        """An upstream error whose body has no shape we know: its first 200 bytes as the message."""
        return self.upstream_error(status, error_text(status, payload), self.status_types.get(status))


# -- the parameter table ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Param:
    """How one OpenAI request field reaches a dialect.

    ``to``: the dotted field of the upstream body it is written to (``"generationConfig.topP"``),
    or None when the dialect's builder reads it itself (or it asks nothing of the upstream).
    ``transform``: value -> upstream value (a None result sends nothing); identity when None.
    ``only``: the values the provider can honour (``true`` is not ``1``); any other is a 400 naming
    the field, with ``why``.
    """

    to: str | None = None
    transform: Callable[[Any], Any] | None = None
    only: tuple[Any, ...] | None = None
    why: str = ""
    # ``to`` split once: the objects on the way (None for a top-level field) and the last name.
    parents: tuple[str, ...] | None = field(init=False, repr=False, compare=False)
    leaf: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        *parents, leaf = self.to.split(".") if self.to else ("",)
        object.__setattr__(self, "parents", tuple(parents) or None)
        object.__setattr__(self, "leaf", leaf)


Params = Mapping[str, Param]
_CONTAINERS = (dict, list)


def apply_params(adapter: Adapter, table: Params, body: Mapping[str, Any], out: dict[str, Any]) -> None:
    """Apply a dialect's table to a client body, writing the mapped fields into ``out``.

    The same rules for every dialect: a null, ``{}`` or ``[]`` asks for nothing and is skipped
    (frameworks send ``logit_bias: {}`` and ``functions: []``); a field the table does not list,
    or a value outside its ``only`` (compared as JSON values: ``true`` is not ``1``), is a 400
    naming it (Switchyard refuses, it never drops). One pass over the body, dict lookups only.
    """
    get = table.get
    for key, value in body.items():
        if value is None or (not value and value.__class__ in _CONTAINERS):
            continue
        p = get(key)
        if p is None:
            raise adapter.unsupported(key, adapter.unlisted_why)
        if p.only is not None:
            for allowed in p.only:
                if value == allowed and (value.__class__ is bool) is (allowed.__class__ is bool):
                    break
            else:
                raise adapter.unsupported(key, p.why)
        if p.to is None:
            continue
        if p.transform is not None:
            value = p.transform(value)
            if value is None:
                continue
        node = out
        if p.parents is not None:
            for step in p.parents:
                node = node.setdefault(step, {})
        node[p.leaf] = value


def given(value: Any) -> bool:
    """Whether a request field asks for something: ``apply_params``'s rule (not null, ``{}`` or ``[]``)."""
    return value is not None and (bool(value) or not isinstance(value, dict | list))


def only_true(value: Any) -> Any:
    """``True`` for ``true``; nothing for ``false`` (which asks for nothing: ``stream``, ``logprobs``)."""
    return True if value is True else None


def same_list(value: Any) -> Any:
    """A string or a list of them as a list (OpenAI's ``stop``); nothing for a falsy non-string."""
    return [value] if isinstance(value, str) else value or None


# -- headers, JSON, ids, chunks ----------------------------------------------------------------------


def auth_headers(
    cfg: ProviderConfig,
    header: str | None,
    scheme: str = "",
    base: Mapping[str, str] | None = None,
    fixed: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """An upstream's headers: ``base`` (content type...), then the operator's configured headers
    (lowercased; they may override ``base``), then ``fixed`` (the dialect's own, e.g. its version),
    then the provider's key in ``header`` (with ``scheme``, e.g. ``"Bearer "``) when one is set."""
    headers = dict(base) if base else {}
    headers.update({k.lower(): v for k, v in cfg.headers.items()})
    if fixed:
        headers.update(fixed)
    key = cfg.api_key.get_secret_value() if cfg.api_key is not None else ""
    if header and key:
        headers[header] = scheme + key
    return headers


def load_json(payload: bytes, adapter: Adapter) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise adapter.bad_response("body is not JSON") from None


def try_json(payload: bytes) -> Any:
    """The parsed body, or None when it is not JSON (error bodies may be anything)."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def error_text(status: int, payload: bytes) -> str:
    """The message for an error body of no known shape: its first 200 bytes, else the status."""
    return payload[:200].decode("utf-8", "replace").strip() or f"HTTP {status}"


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


CHAT_CHUNK = "chat.completion.chunk"
TEXT_COMPLETION = "text_completion"  # legacy completions: the answer's and its stream chunks' object


def chat_chunk(
    ctx: CallContext, chunk_id: str, choices: list[dict[str, Any]], usage: Any = None, obj: str = CHAT_CHUNK
) -> dict[str, Any]:
    """An OpenAI stream chunk with the client's model name: ``chat.completion.chunk``, or for legacy
    completions (``obj=TEXT_COMPLETION``) a ``text_completion`` chunk. ``usage`` only when asked for."""
    out: dict[str, Any] = {
        "id": chunk_id,
        "object": obj,
        "created": ctx.created,
        "model": ctx.client_model,
        "choices": choices,
    }
    if ctx.include_usage:
        out["usage"] = usage
    return out


def finish_reasons(**upstream: str) -> dict[str, FinishReason]:
    """A dialect's stop reasons by the OpenAI ``finish_reason`` each becomes (space-separated names)."""
    return {name: cast("FinishReason", finish) for finish, names in upstream.items() for name in names.split()}


def chunk_out(ctx: CallContext, chunk: dict[str, Any]) -> Any:
    """A chunk a translator built, as the relay wants it: JSON bytes, or the dict itself."""
    return chunk if ctx.chunk_dicts else orjson.dumps(chunk)


def usage_dict(prompt: int, completion: int, **extra: Any) -> dict[str, Any]:
    u: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    u.update(extra)
    return u


# -- embeddings --------------------------------------------------------------------------------------


def b64_floats(values: list[float]) -> str:
    """OpenAI's base64 embedding encoding: little-endian float32, base64."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def embeddings_answer(ctx: CallContext, vectors: list[list[float]], b64: bool, tokens: int) -> dict[str, Any]:
    """OpenAI's embeddings list; ``b64`` encodes each vector as ``encoding_format: base64`` asks."""
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": b64_floats(v) if b64 else v} for i, v in enumerate(vectors)
        ],
        "model": ctx.client_model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
