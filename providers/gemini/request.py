"""OpenAI chat and legacy completions bodies -> Gemini ``generateContent`` bodies: turns, tools, formats.

The table (params.py) fills ``generationConfig``; this module writes what needs more than a
field: the turns (``contents``), ``systemInstruction``, ``tools``/``toolConfig``, the response
format, and the budget rule that ``max_completion_tokens`` wins over ``max_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.errors import GatewayError
from gateway.wire.types import CHAT
from providers.base import apply_params, given
from providers.gemini import params
from providers.gemini.content import call_parts, function_response, media, texts, user_parts

if TYPE_CHECKING:
    from providers.gemini import GeminiAdapter


@dataclass(frozen=True, slots=True)
class GeminiReply:
    """What the way back needs to know of the request (``CallContext.reply``)."""

    n: int = 1  # candidates asked for: a stream is over once each has finished
    inputs: int | None = None  # embeddings: the texts sent, so as many vectors must come back
    base64: bool = False  # embeddings: encoding_format base64
    tokens: int = 0  # embeddings: the estimated prompt tokens (Gemini reports no usage for them)


ONE = GeminiReply()

_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


def generate_body(adapter: GeminiAdapter, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"contents": []}
    apply_params(adapter, params.CHAT if endpoint == CHAT else params.COMPLETIONS, body, out)
    gen: dict[str, Any] = out.get("generationConfig") or {}
    if given(max_tokens := body.get("max_tokens")):
        gen.setdefault("maxOutputTokens", max_tokens)  # max_completion_tokens wins when both are given
    if given(rf := body.get("response_format")):
        _response_format(rf, gen)
    if endpoint == CHAT:
        if given(msgs := body.get("messages")):
            _messages(adapter, msgs, out)
        if given(tools := body.get("tools")):
            out["tools"] = [{"functionDeclarations": _declarations(adapter, tools)}]
        if given(choice := body.get("tool_choice")):
            out["toolConfig"] = {"functionCallingConfig": _tool_config(choice)}
    else:
        _prompt(adapter, body, out["contents"], gen)
    if not out["contents"]:
        param = "messages" if endpoint == CHAT else "prompt"
        raise GatewayError(
            400, "The request has no user or assistant content to send.", param=param, code="invalid_value"
        )
    if gen:
        out["generationConfig"] = gen
    return out


def _add(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    """Append a turn; consecutive turns of one role merge, as Gemini wants turns to alternate."""
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _messages(adapter: GeminiAdapter, msgs: Any, out: dict[str, Any]) -> None:
    contents, system = out["contents"], []
    names: dict[str, str] = {}  # tool_call_id -> function name, for the tool messages that answer them
    for i, msg in enumerate(msgs):
        role = msg.get("role")
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend({"text": t} for t in texts(msg.get("content"), where))
        elif role == "user":
            _add(contents, "user", user_parts(msg.get("content"), f"{where}.content"))
        elif role == "assistant":
            parts: list[dict[str, Any]] = [{"text": t} for t in texts(msg.get("content"), where) if t]
            parts.extend(call_parts(msg.get("tool_calls"), names, where))
            _add(contents, "model", parts)
        elif role == "tool":
            _add(contents, "user", [function_response(msg, names, where)])
        else:
            raise GatewayError(
                400,
                f"Invalid value for '{where}.role': {role!r} is not supported by provider "
                f"'{adapter.name}' (use system, developer, user, assistant or tool).",
                param=f"{where}.role",
                code="invalid_value",
            )
    if system:
        out["systemInstruction"] = {"parts": system}


def _prompt(adapter: GeminiAdapter, body: dict[str, Any], contents: list[dict[str, Any]], gen: dict[str, Any]) -> None:
    """One text prompt (or a list of one), with Fireworks-style ``images``, as one user turn."""
    prompt = body.get("prompt")
    if not given(prompt):
        prompt = None
    elif isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if prompt is not None and not isinstance(prompt, str):
        raise GatewayError(
            400,
            f"Provider '{adapter.name}' (gemini) takes one text prompt per request: 'prompt' must be a "
            "string or an array of one string.",
            param="prompt",
            code="invalid_value",
        )
    images = body.get("images")
    if given(images):
        if not isinstance(images, list):
            raise GatewayError(400, "Invalid 'images': expected an array.", param="images", code="invalid_type")
        _add(contents, "user", _with_images(prompt or "", images))
    elif prompt:
        _add(contents, "user", [{"text": prompt}])
    logprobs = body.get("logprobs")
    if given(logprobs):
        gen["responseLogprobs"] = True
        if logprobs:
            gen["logprobs"] = logprobs


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
            parts.append(media(images[j], f"images[{j}]"))
    return parts


def _declarations(adapter: GeminiAdapter, tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise GatewayError(400, "Invalid 'tools': expected an array.", param="tools", code="invalid_type")
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise adapter.unsupported(f"tools[{i}]", "only function tools with a name can be sent to Gemini")
        decl: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        if isinstance(fn.get("parameters"), dict):
            # OpenAI parameters are JSON Schema; parametersJsonSchema takes them unchanged.
            decl["parametersJsonSchema"] = fn["parameters"]
        out.append(decl)
    return out


def _tool_config(value: Any) -> dict[str, Any]:
    if isinstance(value, str) and value in _MODES:
        return {"mode": _MODES[value]}
    if isinstance(value, dict) and value.get("type") == "function":
        names = _function_names([value])
        if names:
            return {"mode": "ANY", "allowedFunctionNames": names}
    allowed = value.get("allowed_tools") if isinstance(value, dict) else None
    if isinstance(allowed, dict) and allowed.get("mode") in ("auto", "required"):
        return {"mode": _MODES[allowed["mode"]], "allowedFunctionNames": _function_names(allowed.get("tools"))}
    raise GatewayError(
        400,
        "Invalid 'tool_choice': expected 'auto', 'none', 'required', a function choice or an allowed_tools choice.",
        param="tool_choice",
        code="invalid_value",
    )


def _function_names(tools: Any) -> list[str]:
    fns = [t.get("function") for t in tools or [] if isinstance(t, dict)]
    return [f["name"] for f in fns if isinstance(f, dict) and isinstance(f.get("name"), str)]


def _response_format(value: Any, gen: dict[str, Any]) -> None:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return
    if kind == "json_object":
        gen["responseMimeType"] = "application/json"
        if isinstance(value.get("schema"), dict):  # the Fireworks-style schema
            gen["responseJsonSchema"] = value["schema"]
        return
    if kind == "json_schema" and isinstance(value.get("json_schema"), dict):
        schema = value["json_schema"].get("schema")
        gen["responseMimeType"] = "application/json"
        if isinstance(schema, dict):
            # JSON Schema as given (responseJsonSchema); responseSchema would need OpenAPI's subset.
            gen["responseJsonSchema"] = schema
        return
    raise GatewayError(
        400,
        "Invalid 'response_format': expected type 'text', 'json_object' or 'json_schema' with a 'json_schema' object.",
        param="response_format",
        code="invalid_value",
    )
