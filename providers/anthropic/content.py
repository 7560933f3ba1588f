"""OpenAI message content -> Anthropic content blocks: text, images, tool calls and tool results."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import invalid


def text_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """A string or a list of text (or refusal) parts -> text blocks; empty text is left out (the API refuses it)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise invalid(f"Invalid type for '{where}.content': expected a string or an array.", f"{where}.content")
    texts = (part_text(part, f"{where}.content[{j}]") for j, part in enumerate(content))
    return [{"type": "text", "text": t} for t in texts if t]


def part_text(part: Any, where: str) -> str:
    """The text of a text (or an assistant's refusal) content part."""
    kind = part.get("type") if isinstance(part, dict) else None
    text = part.get(kind) if kind in ("text", "refusal") else None
    if not isinstance(text, str):
        raise invalid(f"Invalid value for '{where}': only text parts are allowed here.", where, "invalid_value")
    return text


def data_url(url: str) -> tuple[str, str]:
    """``data:<media type>;base64,<data>`` -> (media type, data); ("", "") when it is not that form."""
    head, sep, data = url[5:].partition(",") if url.startswith("data:") else ("", "", "")
    media_type, _, encoding = head.partition(";")
    return (media_type, data) if sep and encoding == "base64" and media_type and data else ("", "")


def image(image_url: Any, where: str) -> dict[str, Any]:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if isinstance(url, str) and url.startswith("data:"):
        media_type, data = data_url(url)
        if media_type:
            return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    elif isinstance(url, str) and url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise invalid(
        f"Invalid '{where}.image_url.url': expected a base64 data URL (data:image/png;base64,...) or an http(s) URL.",
        f"{where}.image_url.url",
        "invalid_value",
    )


def assistant_blocks(m: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks = text_blocks(m.get("content"), where)
    for j, call in enumerate(m.get("tool_calls") or []):
        w = f"{where}.tool_calls[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(call.get("id"), str):
            raise invalid(f"Invalid '{w}': expected an id and a function with a name.", w, "invalid_value")
        blocks.append({"type": "tool_use", "id": call["id"], "name": fn["name"], "input": _arguments(fn, w)})
    return blocks


def _arguments(fn: dict[str, Any], where: str) -> dict[str, Any]:
    """OpenAI's arguments (a JSON string) -> Anthropic's input (an object)."""
    args = fn.get("arguments")
    if isinstance(args, dict):
        return args
    if not args:
        return {}
    try:
        value = orjson.loads(args)
    except (orjson.JSONDecodeError, TypeError):
        value = None
    if not isinstance(value, dict):
        raise invalid(
            f"Invalid '{where}.function.arguments': expected a JSON object encoded as a string.",
            f"{where}.function.arguments",
            "invalid_value",
        )
    return value


def tool_result(m: dict[str, Any], where: str) -> dict[str, Any]:
    tool_id = m.get("tool_call_id")
    if not isinstance(tool_id, str) or not tool_id:
        raise invalid(
            f"Missing required parameter: '{where}.tool_call_id'.",
            f"{where}.tool_call_id",
            "missing_required_parameter",
        )
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id}
    content = m.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif blocks := text_blocks(content, where):
        block["content"] = blocks
    return block


def add_turn(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Append a turn, merging it into the previous one of the same role (the API wants them alternating)."""
    if not blocks:
        return
    if not turns or turns[-1]["role"] != role:
        turns.append({"role": role, "content": blocks})
        return
    prev = turns[-1]["content"]
    if blocks[0]["type"] == "tool_result":
        # Tool results must lead their user turn, ahead of any text.
        k = next((n for n, b in enumerate(prev) if b["type"] != "tool_result"), len(prev))
        prev[k:k] = blocks
    else:
        prev.extend(blocks)


def collapse(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A lone plain text block is sent as a plain string, as in Anthropic's own examples."""
    if len(blocks) == 1 and blocks[0].keys() == {"type", "text"} and blocks[0]["type"] == "text":
        return blocks[0]["text"]
    return blocks
