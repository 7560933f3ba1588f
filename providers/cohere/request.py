"""OpenAI chat and legacy completions bodies -> Cohere ``/v2/chat`` bodies: messages, tools, formats."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.errors import GatewayError
from gateway.wire.types import COMPLETIONS
from providers.base import apply_params
from providers.cohere import params

if TYPE_CHECKING:
    from providers.base import Target
    from providers.cohere import CohereAdapter


def chat_body(adapter: CohereAdapter, endpoint: str, body: dict[str, Any], target: Target) -> dict[str, Any]:
    if endpoint == COMPLETIONS:
        messages = [{"role": "user", "content": _single_prompt(adapter, body.get("prompt"))}]
        table = params.COMPLETIONS
    else:
        messages = [_message(adapter, m, i) for i, m in enumerate(body.get("messages") or [])]
        table = params.CHAT
    out: dict[str, Any] = {"model": target.upstream_model, "messages": messages}
    apply_params(adapter, table, body, out)
    if body.get("tools"):
        out.update(_tools(adapter, body["tools"], body.get("tool_choice")))
    elif body.get("tool_choice") not in (None, "none", "auto"):
        raise adapter.unsupported("tool_choice", "no tools were given")
    if body.get("response_format") is not None:
        fmt = _response_format(adapter, body["response_format"])
        if fmt is not None:
            out["response_format"] = fmt
    return out


def _single_prompt(adapter: CohereAdapter, prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    if isinstance(prompt, str):
        return prompt
    raise adapter.unsupported("prompt", "Cohere takes one text prompt (no prompt lists or token ids)")


def _message(adapter: CohereAdapter, m: dict[str, Any], i: int) -> dict[str, Any]:
    role = m.get("role")
    if role in ("system", "developer"):
        return {"role": "system", "content": _content(adapter, m.get("content"), i, images=False)}
    if role == "user":
        return {"role": "user", "content": _content(adapter, m.get("content"), i, images=True)}
    if role == "assistant":
        return _assistant(adapter, m, i)
    if role == "tool":
        return {
            "role": "tool",
            "tool_call_id": m.get("tool_call_id"),
            "content": _content(adapter, m.get("content"), i, images=False),
        }
    raise GatewayError(
        400, f"Provider '{adapter.name}' (cohere) does not support the message role '{role}'.", param=f"messages[{i}]"
    )


def _content(adapter: CohereAdapter, content: Any, i: int, images: bool) -> Any:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise GatewayError(400, "Message content must be a string or a list of parts.", param=f"messages[{i}]")
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url" and images:
            parts.append({"type": "image_url", "image_url": part.get("image_url")})
        else:
            raise adapter.unsupported(f"messages[{i}].content", f"content parts of type '{kind}'")
    return parts


def _assistant(adapter: CohereAdapter, m: dict[str, Any], i: int) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant"}
    content = _content(adapter, m.get("content"), i, images=False)
    calls = m.get("tool_calls")
    if calls:
        out["tool_calls"] = [
            {"id": c.get("id"), "type": "function", "function": c.get("function")} for c in calls if isinstance(c, dict)
        ]
        # OpenAI's text beside tool calls is what Cohere calls the tool plan.
        text = content if isinstance(content, str) else "".join(p["text"] for p in content if p["type"] == "text")
        if text:
            out["tool_plan"] = text
    else:
        out["content"] = content
    return out


def _tools(adapter: CohereAdapter, tools: Any, choice: Any) -> dict[str, Any]:
    out_tools = []
    strict = False
    for t in tools if isinstance(tools, list) else ():
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(t.get("function"), dict):
            raise adapter.unsupported("tools", "only function tools are supported")
        fn = t["function"]
        strict = strict or fn.get("strict") is True
        out_tools.append({"type": "function", "function": {k: v for k, v in fn.items() if k != "strict"}})
    out: dict[str, Any] = {"tools": out_tools}
    if strict:
        out["strict_tools"] = True
    if choice == "required":
        out["tool_choice"] = "REQUIRED"
    elif choice == "none":
        out["tool_choice"] = "NONE"
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        chosen = [t for t in out_tools if t["function"].get("name") == name]
        if not chosen:
            raise GatewayError(400, f"tool_choice names an unknown function '{name}'.", param="tool_choice")
        out["tools"], out["tool_choice"] = chosen, "REQUIRED"
    elif choice not in (None, "auto"):
        raise adapter.unsupported("tool_choice")
    return out


def _response_format(adapter: CohereAdapter, fmt: Any) -> dict[str, Any] | None:
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        schema = fmt.get("schema")
        return {"type": "json_object", "json_schema": schema} if schema else {"type": "json_object"}
    if kind == "json_schema" and isinstance(fmt.get("json_schema"), dict):
        return {"type": "json_object", "json_schema": fmt["json_schema"].get("schema") or {}}
    raise adapter.unsupported("response_format", f"type '{kind}'")
