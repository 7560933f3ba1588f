"""Google Gemini dialect (Gemini Developer API, ``generativelanguage.googleapis.com``, v1beta).

OpenAI chat, legacy completions and embeddings become ``generateContent`` /
``streamGenerateContent?alt=sse`` / ``embedContent`` / ``batchEmbedContents`` calls, and the
answers come back in OpenAI's shapes. The key travels in ``x-goog-api-key``, never in the URL.

Every OpenAI request field is either translated (the ``_CHAT`` / ``_COMPLETIONS`` tables), listed
in ``_IGNORED`` (it cannot change the output), or refused with a 400 naming it: nothing is
dropped silently. References: https://ai.google.dev/api/generate-content,
https://ai.google.dev/api/embeddings, https://ai.google.dev/gemini-api/docs/function-calling.
"""

from __future__ import annotations

import base64
import math
import re
import struct
from collections.abc import Callable
from typing import Any

import orjson

from gateway.errors import GatewayError
from providers.base import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    Adapter,
    CallContext,
    Capabilities,
    SSEEvent,
    StreamTranslator,
    Target,
    UpstreamRequest,
    chat_chunk,
    load_json,
    new_id,
    usage_dict,
)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"

# The model becomes one path segment followed by ":method": a '/', '?', '#', ':', '%' or '..'
# could change which resource or method is called, so anything else is refused.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

# finishReason -> OpenAI finish_reason (https://ai.google.dev/api/generate-content#FinishReason);
# any reason not listed (OTHER, LANGUAGE, MALFORMED_FUNCTION_CALL...) becomes "stop".
_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
}

# Google's RPC status -> OpenAI error type (https://ai.google.dev/gemini-api/docs/troubleshooting).
_STATUS_TYPES = {
    "INVALID_ARGUMENT": "invalid_request_error",
    "FAILED_PRECONDITION": "invalid_request_error",
    "OUT_OF_RANGE": "invalid_request_error",
    "UNAUTHENTICATED": "authentication_error",
    "PERMISSION_DENIED": "permission_error",
    "NOT_FOUND": "not_found_error",
    "RESOURCE_EXHAUSTED": "rate_limit_exceeded",
}
_HTTP_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_exceeded",
}

# URL image parts need a mimeType; guessed from the extension, else JPEG (the commonest photo type).
_IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".heic": "image/heic",
    ".heif": "image/heif",
}
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)((?:;[\w.+-]+=[^;,]*)*);base64,(.*)", re.DOTALL)

# Gemini documents about 4 characters per token (https://ai.google.dev/gemini-api/docs/tokens);
# used only for embeddings, whose responses carry no usage.
_CHARS_PER_TOKEN = 4


class GeminiAdapter(Adapter):
    kind = "gemini"
    capabilities = Capabilities(endpoints=frozenset({CHAT, COMPLETIONS, EMBEDDINGS}))

    def __init__(self, name: str, cfg: Any) -> None:
        super().__init__(name, cfg)
        self.base_url = (cfg.base_url or DEFAULT_BASE_URL).rstrip("/")
        headers = {"content-type": "application/json"}
        headers.update({k.lower(): v for k, v in cfg.headers.items()})
        if cfg.api_key is not None and cfg.api_key.get_secret_value():
            headers["x-goog-api-key"] = cfg.api_key.get_secret_value()
        self._headers = headers

    # -- requests ----------------------------------------------------------------------------

    def build_request(self, endpoint: str, body: dict[str, Any], target: Target, ctx: CallContext) -> UpstreamRequest:
        if endpoint not in self.capabilities.endpoints:
            raise self.endpoint_unsupported(endpoint)
        model = self.model_path(target.upstream_model)
        if endpoint == EMBEDDINGS:
            method, payload = self._embeddings_request(body, model, ctx)
            return UpstreamRequest("POST", self._url(model, method), dict(self._headers), orjson.dumps(payload))
        req = _Request(self, endpoint)
        table = _CHAT if endpoint == CHAT else _COMPLETIONS
        for field, value in body.items():
            if value is None or value == {} or value == [] or field in _IGNORED:
                continue  # null or an empty object/array asks for nothing (frameworks send logit_bias: {})
            handler = table.get(field)
            if handler is None:
                raise self.unsupported(field)
            handler(req, value)
        ctx.extra["n"] = req.generation.get("candidateCount", 1)
        stream = body.get("stream") is True
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        headers = dict(self._headers)
        if stream:
            headers["accept"] = "text/event-stream"
        return UpstreamRequest("POST", self._url(model, method), headers, orjson.dumps(req.payload()), stream)

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

    def _embeddings_request(self, body: dict[str, Any], model: str, ctx: CallContext) -> tuple[str, dict[str, Any]]:
        for field, value in body.items():
            if value is not None and field not in _EMBEDDING_FIELDS:
                raise self.unsupported(field)
        inp = body.get("input")
        texts = [inp] if isinstance(inp, str) else inp
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise GatewayError(
                400,
                f"Provider '{self.name}' (gemini) embeds text only: 'input' must be a string or an array of "
                "strings, not token ids.",
                param="input",
                code="invalid_value",
            )
        one: dict[str, Any] = {"model": f"models/{model}"}
        if body.get("dimensions") is not None:
            one["outputDimensionality"] = body["dimensions"]
        requests = [{**one, "content": {"parts": [{"text": t}]}} for t in texts]
        ctx.extra["count"] = len(texts)
        ctx.extra["base64"] = body.get("encoding_format") == "base64"
        ctx.extra["tokens"] = sum(max(1, math.ceil(len(t) / _CHARS_PER_TOKEN)) for t in texts)
        ctx.extra["usage_estimated"] = True  # Gemini reports no usage for embeddings
        if isinstance(inp, str):
            return "embedContent", requests[0]
        return "batchEmbedContents", {"requests": requests}

    # -- responses ---------------------------------------------------------------------------

    def parse_response(self, endpoint: str, payload: bytes, ctx: CallContext) -> dict[str, Any]:
        obj = load_json(payload, self)
        if not isinstance(obj, dict):
            raise self.bad_response("the body is not a JSON object")
        if endpoint == EMBEDDINGS:
            return self._embeddings_response(obj, ctx)
        cands = obj.get("candidates")
        if not cands:
            raise self.blocked(obj, endpoint) or self.bad_response("no 'candidates' in the response")
        if not isinstance(cands, list) or not all(isinstance(c, dict) for c in cands):
            raise self.bad_response("'candidates' is not a list of objects")
        prefix, kind, choice = (
            ("chatcmpl-", "chat.completion", _chat_choice)
            if endpoint == CHAT
            else ("cmpl-", "text_completion", _completion_choice)
        )
        out: dict[str, Any] = {
            "id": prefix + str(obj.get("responseId") or new_id("")),
            "object": kind,
            "created": ctx.created,
            "model": ctx.client_model,
            "choices": sorted((choice(c) for c in cands), key=lambda ch: ch["index"]),
        }
        usage = gemini_usage(obj.get("usageMetadata"))
        if usage is not None:
            out["usage"] = usage
        return out

    def _embeddings_response(self, obj: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        if isinstance(obj.get("embeddings"), list):
            vectors = [e.get("values") if isinstance(e, dict) else None for e in obj["embeddings"]]
        elif isinstance(obj.get("embedding"), dict):
            vectors = [obj["embedding"].get("values")]
        else:
            raise self.bad_response("no 'embedding' or 'embeddings' in the response")
        if len(vectors) != ctx.extra.get("count", len(vectors)) or not all(isinstance(v, list) for v in vectors):
            raise self.bad_response("the embeddings do not match the inputs")
        b64 = ctx.extra.get("base64", False)
        tokens = ctx.extra.get("tokens", 0)
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _b64_floats(v) if b64 else v}
                for i, v in enumerate(vectors)
            ],
            "model": ctx.client_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def blocked(self, obj: dict[str, Any], endpoint: str) -> GatewayError | None:
        """The 400 for a prompt Gemini refused outright (``promptFeedback.blockReason``), else None."""
        fb = obj.get("promptFeedback")
        reason = fb.get("blockReason") if isinstance(fb, dict) else None
        if not reason:
            return None
        detail = f" ({fb['blockReasonMessage']})" if fb.get("blockReasonMessage") else ""
        return GatewayError(
            400,
            f"{self.name}: the prompt was blocked by the provider's safety filters (blockReason: {reason}){detail}.",
            type="invalid_request_error",
            param="messages" if endpoint == CHAT else "prompt",
            code="content_filter",
            reason="content_filter",
        )

    def stream_translator(self, endpoint: str, ctx: CallContext) -> StreamTranslator:
        return GeminiStream(self, endpoint, ctx)

    def parse_error(self, status: int, payload: bytes) -> GatewayError:
        try:
            obj: Any = orjson.loads(payload)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, list) and len(obj) == 1:  # non-SSE streams wrap the error in an array
            obj = obj[0]
        if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
            return self.google_error(status, obj["error"])
        text = payload[:200].decode("utf-8", "replace").strip() or f"HTTP {status}"
        return self.upstream_error(status, text, _HTTP_TYPES.get(status))

    def google_error(self, status: int, err: dict[str, Any]) -> GatewayError:
        """Google's ``{"code", "message", "status", "details"}`` as an OpenAI-shaped error."""
        rpc = err.get("status") if isinstance(err.get("status"), str) else None
        if rpc == "RESOURCE_EXHAUSTED":
            status = 429
        e = self.upstream_error(
            status,
            str(err.get("message") or f"HTTP {status}"),
            _STATUS_TYPES.get(rpc or "") or _HTTP_TYPES.get(status),
            code=rpc,
        )
        delay = _retry_delay(err.get("details"))
        if status == 429 and delay is not None:
            e.headers["Retry-After"] = str(delay)
        return e


# -- the request tables ----------------------------------------------------------------------


class _Request:
    """The Gemini request being assembled from one OpenAI body."""

    __slots__ = ("adapter", "contents", "endpoint", "generation", "images", "system", "tool_config", "tools")

    def __init__(self, adapter: GeminiAdapter, endpoint: str) -> None:
        self.adapter = adapter
        self.endpoint = endpoint
        self.contents: list[dict[str, Any]] = []
        self.system: list[dict[str, Any]] = []
        self.generation: dict[str, Any] = {}
        self.tools: list[dict[str, Any]] = []
        self.tool_config: dict[str, Any] = {}
        self.images: list[Any] | None = None

    def payload(self) -> dict[str, Any]:
        if self.images is not None:
            prompt = self.contents[0]["parts"][0]["text"] if self.contents else ""
            self.contents = []
            self.add("user", _with_images(prompt, self.images))
        if not self.contents:
            param = "messages" if self.endpoint == CHAT else "prompt"
            raise GatewayError(
                400, "The request has no user or assistant content to send.", param=param, code="invalid_value"
            )
        out: dict[str, Any] = {"contents": self.contents}
        if self.system:
            out["systemInstruction"] = {"parts": self.system}
        if self.tools:
            out["tools"] = [{"functionDeclarations": self.tools}]
        if self.tool_config:
            out["toolConfig"] = {"functionCallingConfig": self.tool_config}
        if self.generation:
            out["generationConfig"] = self.generation
        return out

    def add(self, role: str, parts: list[dict[str, Any]]) -> None:
        """Append a turn; consecutive turns of one role merge, as Gemini wants turns to alternate."""
        if not parts:
            return
        if self.contents and self.contents[-1]["role"] == role:
            self.contents[-1]["parts"].extend(parts)
        else:
            self.contents.append({"role": role, "parts": parts})


Handler = Callable[[_Request, Any], None]


def _gen(key: str) -> Handler:
    def put(req: _Request, value: Any) -> None:
        req.generation[key] = value

    return put


def _max_tokens(req: _Request, value: Any) -> None:
    req.generation.setdefault("maxOutputTokens", value)  # max_completion_tokens wins when both are given


def _max_completion_tokens(req: _Request, value: Any) -> None:
    req.generation["maxOutputTokens"] = value


def _stop(req: _Request, value: Any) -> None:
    req.generation["stopSequences"] = [value] if isinstance(value, str) else list(value)


def _response_format(req: _Request, value: Any) -> None:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return
    if kind == "json_object":
        req.generation["responseMimeType"] = "application/json"
        if isinstance(value.get("schema"), dict):  # the Fireworks-style schema
            req.generation["responseJsonSchema"] = value["schema"]
        return
    if kind == "json_schema" and isinstance(value.get("json_schema"), dict):
        schema = value["json_schema"].get("schema")
        req.generation["responseMimeType"] = "application/json"
        if isinstance(schema, dict):
            # JSON Schema as given (responseJsonSchema); responseSchema would need OpenAPI's subset.
            req.generation["responseJsonSchema"] = schema
        return
    raise GatewayError(
        400,
        "Invalid 'response_format': expected type 'text', 'json_object' or 'json_schema' with a 'json_schema' object.",
        param="response_format",
        code="invalid_value",
    )


def _chat_logprobs(req: _Request, value: Any) -> None:
    if value is True:
        req.generation["responseLogprobs"] = True


def _top_logprobs(req: _Request, value: Any) -> None:
    if value:
        req.generation["logprobs"] = value


def _completion_logprobs(req: _Request, value: Any) -> None:
    req.generation["responseLogprobs"] = True
    if value:
        req.generation["logprobs"] = value


def _parallel_tool_calls(req: _Request, value: Any) -> None:
    # Gemini may always answer with several calls at once; only the default can be honoured.
    if value is not True:
        raise req.adapter.unsupported("parallel_tool_calls", "Gemini cannot be limited to one call per turn")


def _best_of(req: _Request, value: Any) -> None:
    if value != 1:
        raise req.adapter.unsupported("best_of", "Gemini returns every candidate it generates")


def _tools(req: _Request, value: Any) -> None:
    if not isinstance(value, list):
        raise GatewayError(400, "Invalid 'tools': expected an array.", param="tools", code="invalid_type")
    for i, tool in enumerate(value):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise req.adapter.unsupported(f"tools[{i}]", "only function tools with a name can be sent to Gemini")
        decl: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        if isinstance(fn.get("parameters"), dict):
            # OpenAI parameters are JSON Schema; parametersJsonSchema takes them unchanged.
            decl["parametersJsonSchema"] = fn["parameters"]
        req.tools.append(decl)


def _tool_choice(req: _Request, value: Any) -> None:
    modes = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
    if isinstance(value, str) and value in modes:
        req.tool_config["mode"] = modes[value]
        return
    if isinstance(value, dict) and value.get("type") == "function":
        names = _function_names([value])
        if names:
            req.tool_config.update(mode="ANY", allowedFunctionNames=names)
            return
    allowed = value.get("allowed_tools") if isinstance(value, dict) else None
    if isinstance(allowed, dict) and allowed.get("mode") in ("auto", "required"):
        names = _function_names(allowed.get("tools"))
        req.tool_config.update(mode=modes[allowed["mode"]], allowedFunctionNames=names)
        return
    raise GatewayError(
        400,
        "Invalid 'tool_choice': expected 'auto', 'none', 'required', a function choice or an allowed_tools choice.",
        param="tool_choice",
        code="invalid_value",
    )


def _function_names(tools: Any) -> list[str]:
    fns = [t.get("function") for t in tools or [] if isinstance(t, dict)]
    return [f["name"] for f in fns if isinstance(f, dict) and isinstance(f.get("name"), str)]


def _store(req: _Request, value: Any) -> None:
    # Nothing is stored upstream, which honours store=false; store=true cannot be.
    if value is not False:
        raise req.adapter.unsupported("store", "Gemini does not store completions")


def _messages(req: _Request, value: Any) -> None:
    names: dict[str, str] = {}  # tool_call_id -> function name, for the tool messages that answer them
    for i, msg in enumerate(value):
        role = msg.get("role")
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            req.system.extend({"text": t} for t in _texts(msg.get("content"), where))
        elif role == "user":
            req.add("user", _user_parts(msg.get("content"), f"{where}.content"))
        elif role == "assistant":
            parts: list[dict[str, Any]] = [{"text": t} for t in _texts(msg.get("content"), where) if t]
            parts.extend(_call_parts(msg.get("tool_calls"), names, where))
            req.add("model", parts)
        elif role == "tool":
            req.add("user", [_function_response(msg, names, where)])
        else:
            raise GatewayError(
                400,
                f"Invalid value for '{where}.role': {role!r} is not supported by provider "
                f"'{req.adapter.name}' (use system, developer, user, assistant or tool).",
                param=f"{where}.role",
                code="invalid_value",
            )


def _prompt(req: _Request, value: Any) -> None:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        value = value[0]
    if not isinstance(value, str):
        raise GatewayError(
            400,
            f"Provider '{req.adapter.name}' (gemini) takes one text prompt per request: 'prompt' must be a "
            "string or an array of one string.",
            param="prompt",
            code="invalid_value",
        )
    req.add("user", [{"text": value}] if value else [])


def _images(req: _Request, value: Any) -> None:
    if not isinstance(value, list):
        raise GatewayError(400, "Invalid 'images': expected an array.", param="images", code="invalid_type")
    req.images = value  # applied in payload(), once the prompt is known whatever the field order


def _with_images(prompt: str, images: list[Any]) -> list[dict[str, Any]]:
    """Fireworks-style ``images``: data URLs that fill the prompt's ``<image>`` markers."""
    pieces = prompt.split("<image>")
    if len(pieces) - 1 != len(images):
        raise GatewayError(
            400,
            f"'images' has {len(images)} entries but the prompt has {len(pieces) - 1} '<image>' markers.",
            param="images",
            code="invalid_value",
        )
    parts: list[dict[str, Any]] = []
    for j, text in enumerate(pieces):
        if text:
            parts.append({"text": text})
        if j < len(images):
            parts.append(_media(images[j], f"images[{j}]"))
    return parts


# The one table: each OpenAI field and how it reaches Gemini (https://ai.google.dev/api/generate-content).
_COMMON: dict[str, Handler] = {
    "temperature": _gen("temperature"),
    "top_p": _gen("topP"),
    "top_k": _gen("topK"),
    "max_tokens": _max_tokens,
    "n": _gen("candidateCount"),
    "presence_penalty": _gen("presencePenalty"),
    "frequency_penalty": _gen("frequencyPenalty"),
    "seed": _gen("seed"),
    "stop": _stop,
    "response_format": _response_format,
}
_CHAT: dict[str, Handler] = {
    **_COMMON,
    "messages": _messages,
    "max_completion_tokens": _max_completion_tokens,
    "logprobs": _chat_logprobs,
    "top_logprobs": _top_logprobs,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "parallel_tool_calls": _parallel_tool_calls,
    "store": _store,
}
_COMPLETIONS: dict[str, Handler] = {
    **_COMMON,
    "prompt": _prompt,
    "images": _images,
    "logprobs": _completion_logprobs,
    "best_of": _best_of,
}
# Fields that cannot change what the model generates: the URL or the gateway carries them.
_IGNORED = frozenset({"model", "stream", "stream_options", "user"})
_EMBEDDING_FIELDS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})


# -- message pieces --------------------------------------------------------------------------


def _texts(content: Any, where: str) -> list[str]:
    """The text of a system or assistant ``content`` (a string or a list of text parts)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        out = []
        for j, p in enumerate(content):
            if not isinstance(p, dict) or p.get("type") not in ("text", "refusal"):
                raise GatewayError(
                    400,
                    f"Invalid '{where}.content[{j}]': only text parts are allowed here.",
                    param=f"{where}.content[{j}]",
                    code="invalid_value",
                )
            out.append(str(p.get("text") or p.get("refusal") or ""))
        return out
    raise GatewayError(400, f"Invalid type for '{where}.content'.", param=f"{where}.content", code="invalid_type")


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise GatewayError(400, f"Invalid type for '{where}'.", param=where, code="invalid_type")
    parts = []
    for j, p in enumerate(content):
        kind = p.get("type") if isinstance(p, dict) else None
        here = f"{where}[{j}]"
        if kind == "text":
            if p.get("text"):
                parts.append({"text": str(p["text"])})
        elif kind == "image_url":
            img = p.get("image_url")
            parts.append(_media(img.get("url") if isinstance(img, dict) else img, f"{here}.image_url.url"))
        elif kind == "input_audio" and isinstance(p.get("input_audio"), dict):
            audio = p["input_audio"]
            parts.append({"inlineData": {"mimeType": f"audio/{audio.get('format')}", "data": audio.get("data")}})
        elif kind == "file" and isinstance(p.get("file"), dict) and p["file"].get("file_data"):
            parts.append(_media(p["file"]["file_data"], f"{here}.file.file_data"))
        else:
            raise GatewayError(
                400,
                f"Invalid '{here}': part type {kind!r} is not supported by Gemini through this gateway "
                "(text, image_url, input_audio and file with file_data are).",
                param=here,
                code="invalid_value",
            )
    return parts


def _media(url: Any, where: str) -> dict[str, Any]:
    """A data URL -> ``inlineData``; an http(s) or gs:// URL -> ``fileData`` with a guessed mimeType."""
    if isinstance(url, str):
        m = _DATA_URL.fullmatch(url)
        if m:
            return {"inlineData": {"mimeType": m.group(1), "data": m.group(3)}}
        if url.startswith(("https://", "http://", "gs://")):
            path = url.split("?", 1)[0].split("#", 1)[0].lower()
            ext = path[path.rfind(".") :] if "." in path.rsplit("/", 1)[-1] else ""
            return {"fileData": {"mimeType": _IMAGE_TYPES.get(ext, "image/jpeg"), "fileUri": url}}
    raise GatewayError(
        400,
        f"Invalid '{where}': expected a base64 data URL or an http(s):// or gs:// URL.",
        param=where,
        code="invalid_value",
    )


def _call_parts(calls: Any, names: dict[str, str], where: str) -> list[dict[str, Any]]:
    """Assistant ``tool_calls`` -> ``functionCall`` parts, each with its thought signature if it had one."""
    parts = []
    for k, call in enumerate(calls or []):
        here = f"{where}.tool_calls[{k}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise GatewayError(
                400, f"Invalid '{here}': a function call needs a name.", param=here, code="invalid_value"
            )
        try:
            args = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            args = None
        if not isinstance(args, dict):
            raise GatewayError(
                400,
                f"Invalid '{here}.function.arguments': Gemini needs a JSON object.",
                param=f"{here}.function.arguments",
                code="invalid_value",
            )
        names[str(call.get("id"))] = fn["name"]
        part: dict[str, Any] = {"functionCall": {"name": fn["name"], "args": args}}
        sig = _signature_of(call)
        if sig:
            part["thoughtSignature"] = sig
        parts.append(part)
    return parts


def _signature_of(call: dict[str, Any]) -> str | None:
    """The thought signature we handed out on a tool call (Gemini 3 needs it back with the call)."""
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    sig = google.get("thought_signature") if isinstance(google, dict) else None
    return sig if isinstance(sig, str) else None


def _function_response(msg: dict[str, Any], names: dict[str, str], where: str) -> dict[str, Any]:
    call_id = str(msg.get("tool_call_id"))
    if call_id not in names:
        raise GatewayError(
            400,
            f"Invalid '{where}.tool_call_id': no earlier assistant tool call has the id {call_id!r}.",
            param=f"{where}.tool_call_id",
            code="invalid_value",
        )
    text = "".join(_texts(msg.get("content"), where))
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    # Gemini's response is a JSON object: an object result goes as is, anything else under "result".
    response = parsed if isinstance(parsed, dict) else {"result": text}
    return {"functionResponse": {"name": names[call_id], "response": response}}


# -- response pieces -------------------------------------------------------------------------


def gemini_usage(meta: Any) -> dict[str, Any] | None:
    """``usageMetadata`` -> OpenAI usage. Thinking tokens are billed as output, so they count as
    completion tokens (and show as ``reasoning_tokens``); tool-use prompt tokens count as prompt."""
    if not isinstance(meta, dict) or not isinstance(meta.get("promptTokenCount"), int):
        return None
    prompt = meta["promptTokenCount"] + int(meta.get("toolUsePromptTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    extra: dict[str, Any] = {}
    if thoughts:
        extra["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    if meta.get("cachedContentTokenCount"):
        extra["prompt_tokens_details"] = {"cached_tokens": int(meta["cachedContentTokenCount"])}
    return usage_dict(prompt, int(meta.get("candidatesTokenCount") or 0) + thoughts, **extra)


def _parts(cand: dict[str, Any]) -> list[dict[str, Any]]:
    content = cand.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    # Thought summaries ("thought": true) are the model's reasoning, not its answer.
    return [p for p in parts or [] if isinstance(p, dict) and not p.get("thought")]


def _text(parts: list[dict[str, Any]]) -> str:
    return "".join(p["text"] for p in parts if isinstance(p.get("text"), str))


def _tool_calls(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    calls = []
    for p in parts:
        fc = p.get("functionCall")
        if not isinstance(fc, dict):
            continue
        call: dict[str, Any] = {
            "id": new_id("call_"),
            "type": "function",
            "function": {"name": fc.get("name", ""), "arguments": orjson.dumps(fc.get("args") or {}).decode()},
        }
        if isinstance(p.get("thoughtSignature"), str):
            # Google's own OpenAI-compatible shape, so clients that replay the message send it back.
            call["extra_content"] = {"google": {"thought_signature": p["thoughtSignature"]}}
        calls.append(call)
    return calls


def _finish(cand: dict[str, Any], has_calls: bool) -> str | None:
    reason = cand.get("finishReason")
    if not reason:
        return None
    mapped = _FINISH.get(reason, "stop")
    return "tool_calls" if mapped == "stop" and has_calls else mapped


def _index(cand: dict[str, Any]) -> int:
    # Proto3 JSON omits zero values, so a missing index is candidate 0.
    idx = cand.get("index")
    return idx if isinstance(idx, int) else 0


def _chat_choice(cand: dict[str, Any]) -> dict[str, Any]:
    parts = _parts(cand)
    calls = _tool_calls(parts)
    text = _text(parts)
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else ""), "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return {
        "index": _index(cand),
        "message": message,
        "logprobs": _chat_logprobs_of(cand),
        "finish_reason": _finish(cand, bool(calls)) or "stop",
    }


def _completion_choice(cand: dict[str, Any]) -> dict[str, Any]:
    return {
        "text": _text(_parts(cand)),
        "index": _index(cand),
        "logprobs": _completion_logprobs_of(cand, 0),
        "finish_reason": _finish(cand, False) or "stop",
    }


def _steps(cand: dict[str, Any]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]] | None:
    """``logprobsResult`` as (chosen token, its top alternatives) per decoding step."""
    res = cand.get("logprobsResult")
    if not isinstance(res, dict) or not isinstance(res.get("chosenCandidates"), list):
        return None
    tops = res.get("topCandidates") or []
    out = []
    for i, chosen in enumerate(res["chosenCandidates"]):
        top = tops[i].get("candidates") if i < len(tops) and isinstance(tops[i], dict) else None
        out.append((chosen, top or []))
    return out


def _chat_logprobs_of(cand: dict[str, Any]) -> dict[str, Any] | None:
    steps = _steps(cand)
    if steps is None:
        return None

    def entry(c: dict[str, Any]) -> dict[str, Any]:
        tok = str(c.get("token", ""))
        return {"token": tok, "logprob": c.get("logProbability", 0.0), "bytes": list(tok.encode())}

    return {"content": [{**entry(ch), "top_logprobs": [entry(t) for t in top]} for ch, top in steps], "refusal": None}


def _completion_logprobs_of(cand: dict[str, Any], offset: int) -> dict[str, Any] | None:
    steps = _steps(cand)
    if steps is None:
        return None
    tokens = [str(ch.get("token", "")) for ch, _ in steps]
    offsets = []
    for tok in tokens:
        offsets.append(offset)
        offset += len(tok)
    return {
        "tokens": tokens,
        "token_logprobs": [ch.get("logProbability", 0.0) for ch, _ in steps],
        "top_logprobs": [{str(t.get("token", "")): t.get("logProbability", 0.0) for t in top} for _, top in steps],
        "text_offset": offsets,
    }


def _b64_floats(values: list[float]) -> str:
    """OpenAI's base64 embedding encoding: little-endian float32, base64."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def _retry_delay(details: Any) -> int | None:
    """Whole seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "13.5s"``)."""
    for d in details if isinstance(details, list) else []:
        delay = d.get("retryDelay") if isinstance(d, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(1, math.ceil(float(delay[:-1])))
            except (ValueError, OverflowError):
                return None
    return None


# -- streams ---------------------------------------------------------------------------------


class GeminiStream(StreamTranslator):
    """Each ``data:`` frame is a whole GenerateContentResponse; Gemini sends no end marker, so the
    stream is finished once every requested candidate has reported a finishReason."""

    def __init__(self, adapter: GeminiAdapter, endpoint: str, ctx: CallContext) -> None:
        self.adapter = adapter
        self.endpoint = endpoint
        self.ctx = ctx
        self.n = ctx.extra.get("n", 1)
        self.id = ("chatcmpl-" if endpoint == CHAT else "cmpl-") + new_id("")
        self.started: set[int] = set()
        self.done: set[int] = set()
        self.calls: dict[int, int] = {}  # candidate index -> tool calls sent so far
        self.offsets: dict[int, int] = {}  # candidate index -> text length so far (completion logprobs)
        self.usage = None
        self.finished = False
        self.content_chunks = 0

    def feed(self, event: SSEEvent) -> list[bytes]:
        if not event.data.strip():
            return []
        try:
            frame = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise self.adapter.bad_response("a stream frame is not JSON") from None
        if not isinstance(frame, dict):
            raise self.adapter.bad_response("a stream frame is not a JSON object")
        if isinstance(frame.get("error"), dict):
            err = frame["error"]
            code = err.get("code")
            raise self.adapter.google_error(code if isinstance(code, int) and 400 <= code < 600 else 502, err)
        usage = gemini_usage(frame.get("usageMetadata"))
        if usage is not None:
            self.usage = usage  # each frame carries the running totals; the last one is final
        cands = frame.get("candidates")
        if not cands:
            blocked = self.adapter.blocked(frame, self.endpoint)
            if blocked is not None:
                raise blocked
            return []
        out: list[dict[str, Any]] = []
        for cand in cands:
            if isinstance(cand, dict):
                out.extend(self._candidate(cand))
        if not self.finished and len(self.done) >= self.n:
            self.finished = True
            if self.ctx.include_usage and self.usage is not None:
                out.append(self._chunk([], self.usage))
        return [orjson.dumps(c) for c in out]

    def _candidate(self, cand: dict[str, Any]) -> list[dict[str, Any]]:
        idx = _index(cand)
        if idx in self.done:
            return []  # the candidate already finished; a repeated finishReason adds nothing
        return self._chat(cand, idx) if self.endpoint == CHAT else self._completion(cand, idx)

    def _chat(self, cand: dict[str, Any], idx: int) -> list[dict[str, Any]]:
        out = []
        if idx not in self.started:
            self.started.add(idx)
            delta0 = {"role": "assistant", "content": ""}
            out.append(self._chunk([{"index": idx, "delta": delta0, "logprobs": None, "finish_reason": None}]))
        parts = _parts(cand)
        text = _text(parts)
        delta: dict[str, Any] = {}
        if text:
            delta["content"] = text
        calls = _tool_calls(parts)
        if calls:
            first = self.calls.get(idx, 0)
            delta["tool_calls"] = [{"index": first + k, **c} for k, c in enumerate(calls)]
            self.calls[idx] = first + len(calls)
        if delta:
            self.content_chunks += 1
            logprobs = _chat_logprobs_of(cand)
            out.append(self._chunk([{"index": idx, "delta": delta, "logprobs": logprobs, "finish_reason": None}]))
        finish = _finish(cand, self.calls.get(idx, 0) > 0)
        if finish:
            self.done.add(idx)
            out.append(self._chunk([{"index": idx, "delta": {}, "logprobs": None, "finish_reason": finish}]))
        return out

    def _completion(self, cand: dict[str, Any], idx: int) -> list[dict[str, Any]]:
        text = _text(_parts(cand))
        finish = _finish(cand, False)
        if not text and not finish:
            return []
        if text:
            self.content_chunks += 1
        offset = self.offsets.get(idx, 0)
        self.offsets[idx] = offset + len(text)
        if finish:
            self.done.add(idx)
        logprobs = _completion_logprobs_of(cand, offset)
        return [self._chunk([{"text": text, "index": idx, "logprobs": logprobs, "finish_reason": finish}])]

    def _chunk(self, choices: list[dict[str, Any]], usage: Any = None) -> dict[str, Any]:
        if self.endpoint == CHAT:
            return chat_chunk(self.ctx, self.id, choices, usage)
        out: dict[str, Any] = {
            "id": self.id,
            "object": "text_completion",
            "created": self.ctx.created,
            "model": self.ctx.client_model,
            "choices": choices,
        }
        if self.ctx.include_usage:
            out["usage"] = usage
        return out
