"""OpenAI message content -> Gemini ``parts``: text, images, audio, files, function calls and results."""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway.errors import GatewayError

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


def texts(content: Any, where: str) -> list[str]:
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


def user_parts(content: Any, where: str) -> list[dict[str, Any]]:
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
            parts.append(media(img.get("url") if isinstance(img, dict) else img, f"{here}.image_url.url"))
        elif kind == "input_audio" and isinstance(p.get("input_audio"), dict):
            audio = p["input_audio"]
            parts.append({"inlineData": {"mimeType": f"audio/{audio.get('format')}", "data": audio.get("data")}})
        elif kind == "file" and isinstance(p.get("file"), dict) and p["file"].get("file_data"):
            parts.append(media(p["file"]["file_data"], f"{here}.file.file_data"))
        else:
            raise GatewayError(
                400,
                f"Invalid '{here}': part type {kind!r} is not supported by Gemini through this gateway "
                "(text, image_url, input_audio and file with file_data are).",
                param=here,
                code="invalid_value",
            )
    return parts


def media(url: Any, where: str) -> dict[str, Any]:
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


def call_parts(calls: Any, names: dict[str, str], where: str) -> list[dict[str, Any]]:
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


def function_response(msg: dict[str, Any], names: dict[str, str], where: str) -> dict[str, Any]:
    call_id = str(msg.get("tool_call_id"))
    if call_id not in names:
        raise GatewayError(
            400,
            f"Invalid '{where}.tool_call_id': no earlier assistant tool call has the id {call_id!r}.",
            param=f"{where}.tool_call_id",
            code="invalid_value",
        )
    text = "".join(texts(msg.get("content"), where))
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    # Gemini's response is a JSON object: an object result goes as is, anything else under "result".
    response = parsed if isinstance(parsed, dict) else {"result": text}
    return {"functionResponse": {"name": names[call_id], "response": response}}
