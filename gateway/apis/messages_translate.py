"""Anthropic Messages API over the Chat Completions form ("the chat form").

Clients (the anthropic SDK, Claude Code) speak ``POST /v1/messages``; every provider adapter
speaks the chat form. This module is the pure translator pair: ``validate`` + ``to_chat`` for the
request, ``from_chat`` for a whole answer, ``MessagesStream`` (in ``messages_stream``) for a
streamed one, and Anthropic-shaped errors. No I/O.

What a chat provider cannot do is refused with a 400 naming the field and the provider: silently
dropping what a client asked for would change its results without telling it.

Sources: https://platform.claude.com/docs/en/api/messages,
https://platform.claude.com/docs/en/build-with-claude/streaming,
https://platform.claude.com/docs/en/agents-and-tools/tool-use/implement-tool-use,
https://platform.claude.com/docs/en/build-with-claude/extended-thinking,
https://platform.claude.com/docs/en/api/errors, and the anthropic SDK's types.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.apis.messages_stream import (
    ERROR_TYPES,
    MessagesStream,
    error_body,
    error_event,
    error_status,
    msg_id,
    parse_arguments,
    stop_reason,
    usage_from_chat,
)
from gateway.errors import GatewayError

__all__ = [
    "ERROR_TYPES",
    "MessagesStream",
    "count_text",
    "error_body",
    "error_event",
    "error_status",
    "from_chat",
    "to_chat",
    "validate",
]

# -- validation ---------------------------------------------------------------------------------


def _bad(field: str, why: str) -> GatewayError:
    # Anthropic words validation errors as "<dotted path>: <pydantic message>".
    return GatewayError(400, f"{field}: {why}", param=field, code="invalid_request_error")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # True is an int to Python, not to JSON Schema


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _range(body: dict, name: str, low: float, high: float | None, integer: bool = False) -> None:
    v = body.get(name)
    if v is None:
        return
    if not (_is_int(v) if integer else _is_num(v)):
        raise _bad(name, "Input should be a valid integer" if integer else "Input should be a valid number")
    if v < low:
        raise _bad(name, f"Input should be greater than or equal to {low}")
    if high is not None and v > high:
        raise _bad(name, f"Input should be less than or equal to {high}")


def _blocks(content: Any, where: str) -> None:
    for j, block in enumerate(content):
        w = f"{where}.{j}"
        if not isinstance(block, dict):
            raise _bad(w, "Input should be a valid dictionary")
        kind = block.get("type")
        if kind is None:
            raise _bad(f"{w}.type", "Field required")
        if not isinstance(kind, str):
            raise _bad(f"{w}.type", "Input should be a valid string")
        # The fields the translation reads; everything else is checked where it is translated.
        if kind == "text" and not isinstance(block.get("text"), str):
            raise _bad(f"{w}.text", "Field required" if block.get("text") is None else "Input should be a valid string")
        elif kind == "tool_use":
            for key in ("id", "name"):
                if not isinstance(block.get(key), str):
                    raise _bad(f"{w}.{key}", "Field required")
            if not isinstance(block.get("input"), dict):
                raise _bad(f"{w}.input", "Input should be a valid dictionary")
        elif kind == "tool_result" and not isinstance(block.get("tool_use_id"), str):
            raise _bad(f"{w}.tool_use_id", "Field required")


def validate(body: dict) -> None:
    """Check a Messages request the way Anthropic does; raise a 400 ``GatewayError`` on the first fault."""
    if not isinstance(body, dict):
        raise GatewayError(400, "Input should be a valid dictionary", code="invalid_request_error")
    for name, check, kind in (("model", str, "string"), ("max_tokens", int, "integer"), ("messages", list, "list")):
        v = body.get(name)
        if v is None:
            raise _bad(name, "Field required")
        if not isinstance(v, check) or isinstance(v, bool):
            raise _bad(name, f"Input should be a valid {kind}")
    if not body["model"]:
        raise _bad("model", "String should have at least 1 character")
    if body["max_tokens"] < 1:
        raise _bad("max_tokens", "Input should be greater than or equal to 1")
    messages = body["messages"]
    if not messages:
        raise _bad("messages", "List should have at least 1 item after validation, not 0")
    last = len(messages) - 1
    for i, m in enumerate(messages):
        w = f"messages.{i}"
        if not isinstance(m, dict):
            raise _bad(w, "Input should be a valid dictionary")
        if m.get("role") not in ("user", "assistant"):
            raise _bad(
                f"{w}.role", "Field required" if m.get("role") is None else "Input should be 'user' or 'assistant'"
            )
        content = m.get("content")
        if content is None:
            raise _bad(f"{w}.content", "Field required")
        if isinstance(content, list):
            _blocks(content, f"{w}.content")
        elif not isinstance(content, str):
            raise _bad(f"{w}.content", "Input should be a valid string or a valid list")
        if not content and not (i == last and m["role"] == "assistant"):
            # Anthropic's own wording for this rule.
            raise GatewayError(
                400,
                "messages: all messages must have non-empty content except for the optional final assistant message",
                param=f"{w}.content",
                code="invalid_request_error",
            )
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        if not isinstance(system, list):
            raise _bad("system", "Input should be a valid string or a valid list")
        _blocks(system, "system")
        for j, block in enumerate(system):
            if block["type"] != "text":
                raise _bad(f"system.{j}.type", "Input should be 'text'")
    _range(body, "temperature", 0, 1)
    _range(body, "top_p", 0, 1)
    _range(body, "top_k", 0, None, integer=True)
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise _bad("stop_sequences", "Input should be a valid list of strings")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise _bad("stream", "Input should be a valid boolean")
    _validate_tools(body)
    _validate_thinking(body)
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _bad("metadata", "Input should be a valid dictionary")
        if metadata.get("user_id") is not None and not isinstance(metadata["user_id"], str):
            raise _bad("metadata.user_id", "Input should be a valid string")


def _validate_tools(body: dict) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("tools", "Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise _bad(f"tools.{i}", "Input should be a valid dictionary")
            if not isinstance(tool.get("name"), str):
                raise _bad(f"tools.{i}.name", "Field required")
            if tool.get("type") in (None, "custom") and not isinstance(tool.get("input_schema"), dict):
                raise _bad(f"tools.{i}.input_schema", "Field required")
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict):
            raise _bad("tool_choice", "Input should be a valid dictionary")
        kind = choice.get("type")
        if kind not in ("auto", "any", "tool", "none"):
            why = "Field required" if kind is None else "Input should be 'auto', 'any', 'tool' or 'none'"
            raise _bad("tool_choice.type", why)
        if kind == "tool" and not isinstance(choice.get("name"), str):
            raise _bad("tool_choice.name", "Field required")
        parallel = choice.get("disable_parallel_tool_use")
        if parallel is not None and not isinstance(parallel, bool):
            raise _bad("tool_choice.disable_parallel_tool_use", "Input should be a valid boolean")


def _validate_thinking(body: dict) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    if not isinstance(thinking, dict):
        raise _bad("thinking", "Input should be a valid dictionary")
    kind = thinking.get("type")
    if kind not in ("enabled", "disabled", "adaptive"):
        why = "Field required" if kind is None else "Input should be 'enabled', 'disabled' or 'adaptive'"
        raise _bad("thinking.type", why)
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if budget is None:
            raise _bad("thinking.enabled.budget_tokens", "Field required")
        if not _is_int(budget):
            raise _bad("thinking.enabled.budget_tokens", "Input should be a valid integer")
        if budget < 1024:
            raise _bad("thinking.enabled.budget_tokens", "Input should be greater than or equal to 1024")
        if budget >= body["max_tokens"]:
            raise GatewayError(
                400,
                "`max_tokens` must be greater than `thinking.budget_tokens`.",
                param="thinking.budget_tokens",
                code="invalid_request_error",
            )


# -- request: Messages -> chat ------------------------------------------------------------------


def _unsupported(param: str, what: str, provider: str) -> GatewayError:
    return GatewayError(
        400,
        f"{what} is not supported by provider '{provider}' on the Messages API.",
        param=param,
        code="unsupported_parameter",
    )


# Fields that change nothing a chat provider could honour differently: prompt-cache hints (caching
# is the provider's own business) and cache-miss diagnostics (they only add to Anthropic's answer).
_IGNORED = frozenset({"cache_control", "diagnostics"})
# Fields the chat form cannot carry: accepted only at their default (None, empty, or these values).
_DEFAULTS: dict[str, tuple[Any, ...]] = {"service_tier": ("auto",), "speed": ("standard",)}
# Thinking budgets map to OpenAI's three effort levels at Anthropic's own steps: 1024 is the
# minimum budget, and its docs suggest starting there and raising by powers of four.
_EFFORT_STEPS = ((4096, "low"), (16384, "medium"))
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def to_chat(body: dict, provider: str) -> dict:
    """A validated Messages request as a Chat Completions request body."""
    out: dict[str, Any] = {"model": body["model"], "messages": _chat_messages(body, provider)}
    out["max_tokens"] = body["max_tokens"]
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None:  # top_k is a chat extra some adapters refuse: only when asked for
            out[key] = body[key]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    user = (body.get("metadata") or {}).get("user_id")
    if user:
        out["user"] = user
    if body.get("stream"):
        # Anthropic reports usage at the end of every stream; the chat form only when asked.
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    tools = _chat_tools(body.get("tools"), provider)
    if tools:
        out["tools"] = tools
    choice = body.get("tool_choice")
    if choice and tools:  # chat providers refuse a tool_choice without tools; with none there is no choice
        kind = choice["type"]
        if kind == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        else:
            out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
        if choice.get("disable_parallel_tool_use") and kind != "none":
            out["parallel_tool_calls"] = False
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled":
        budget = thinking["budget_tokens"]
        out["reasoning_effort"] = next((e for limit, e in _EFFORT_STEPS if budget < limit), "high")
    elif thinking.get("type") == "adaptive":
        out["reasoning_effort"] = "medium"
    _output_config(body.get("output_config"), out, provider)
    handled = _HANDLED
    for key, value in body.items():
        if key in handled or key in _IGNORED or value is None or value == [] or value == {}:
            continue
        if value not in _DEFAULTS.get(key, ()):
            raise _unsupported(key, f"The parameter '{key}'", provider)
    return out


_HANDLED = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "stream",
        "tools",
        "tool_choice",
        "thinking",
        "metadata",
        "output_config",
    }
)


def _output_config(config: Any, out: dict, provider: str) -> None:
    """``output_config``: effort -> ``reasoning_effort`` (wins over a thinking budget: it is the
    explicit knob); a JSON schema format -> a strict ``json_schema`` response format."""
    if not config:
        return
    if not isinstance(config, dict):
        raise _bad("output_config", "Input should be a valid dictionary")
    effort = config.get("effort")
    if effort is not None:
        if effort not in _EFFORTS:
            raise _bad("output_config.effort", "Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")
        out["reasoning_effort"] = _EFFORTS[effort]
    fmt = config.get("format")
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
            raise _unsupported("output_config.format", "This output format", provider)
        out["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": fmt["schema"], "strict": True},
        }
    for key, value in config.items():
        if key not in ("effort", "format") and value is not None:
            raise _unsupported(f"output_config.{key}", f"The parameter 'output_config.{key}'", provider)


def _chat_tools(tools: list[dict] | None, provider: str) -> list[dict]:
    out = []
    for i, tool in enumerate(tools or ()):
        kind = tool.get("type")
        if kind not in (None, "custom"):
            # Server and Anthropic-defined client tools (web_search_20250305, bash_20250124, ...)
            # need Anthropic's own runtime or trained-in schemas.
            raise _unsupported(f"tools.{i}", f"The tool '{tool.get('name')}' (type '{kind}')", provider)
        fn: dict[str, Any] = {"name": tool["name"]}
        if tool.get("description"):
            fn["description"] = tool["description"]
        fn["parameters"] = tool["input_schema"]
        if tool.get("strict") is True:
            fn["strict"] = True
        out.append({"type": "function", "function": fn})
    return out


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    # One system message with the blocks as paragraphs: several system messages, or list content on
    # the system role, are refused by some chat providers, and a blank line keeps separately written
    # blocks (Claude Code sends an identity line, then its long prompt) from running together.
    return "\n\n".join(b["text"] for b in system if b.get("text"))


def _chat_messages(body: dict, provider: str) -> list[dict]:
    out: list[dict] = []
    system = body.get("system")
    if system:
        text = _system_text(system)
        if text:
            out.append({"role": "system", "content": text})
    for i, m in enumerate(body["messages"]):
        if m["role"] == "user":
            _user(out, m["content"], f"messages.{i}.content", provider)
        else:
            _assistant(out, m["content"], f"messages.{i}.content", provider)
    return out


def _user(out: list[dict], content: str | list[dict], where: str, provider: str) -> None:
    if isinstance(content, str):
        out.append({"role": "user", "content": content})
        return
    parts: list[dict] = []
    moved: list[dict] = []  # images from tool results: a chat tool message carries text only
    for j, block in enumerate(content):
        kind, w = block["type"], f"{where}.{j}"
        if kind == "text":
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image(block, w, provider))
        elif kind == "document":
            parts.append(_document(block, w, provider))
        elif kind == "tool_result":
            # Tool answers go first, as chat tool messages, right after the assistant's tool_calls.
            out.append(_tool_message(block, w, provider, moved))
        else:
            raise _unsupported(w, f"Content of type '{kind}'", provider)
    parts = moved + parts
    if not parts:
        return
    if len(parts) == 1 and parts[0]["type"] == "text":
        out.append({"role": "user", "content": parts[0]["text"]})
    else:
        out.append({"role": "user", "content": parts})


def _tool_message(block: dict, where: str, provider: str, moved: list[dict]) -> dict:
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        texts = []
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(part.get("text") or "")
            elif kind == "image":
                moved.append(_image(part, f"{where}.content.{j}", provider))
            else:
                raise _unsupported(f"{where}.content.{j}", f"Tool result content of type '{kind}'", provider)
        text = "\n".join(texts)
    if block.get("is_error"):
        # The chat form has no error flag on tool messages; the model must still learn the call failed.
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}


def _image(block: dict, where: str, provider: str) -> dict:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif kind == "url":
        url = source.get("url")
    else:
        raise _unsupported(f"{where}.source", f"An image source of type '{kind}'", provider)
    return {"type": "image_url", "image_url": {"url": url}}


def _document(block: dict, where: str, provider: str) -> dict:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "text":  # a plain-text document is just text to a chat model
        return {"type": "text", "text": source.get("data") or ""}
    raise _unsupported(where, f"A document with a source of type '{kind}'", provider)


def _assistant(out: list[dict], content: str | list[dict], where: str, provider: str) -> None:
    if isinstance(content, str):
        out.append({"role": "assistant", "content": content})
        return
    texts: list[str] = []
    calls: list[dict] = []
    for j, block in enumerate(content):
        kind = block["type"]
        if kind == "text":
            texts.append(block["text"])
        elif kind == "tool_use":
            args = orjson.dumps(block["input"]).decode()
            calls.append(
                {"id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": args}}
            )
        elif kind in ("thinking", "redacted_thinking"):
            # Dropped: chat providers take no reasoning back in input, and the signature that makes a
            # thinking block meaningful is Anthropic's alone.
            continue
        else:
            raise _unsupported(f"{where}.{j}", f"Content of type '{kind}'", provider)
    # Text blocks in one assistant turn are pieces of one reply (citations split sentences): no separator.
    text = "".join(texts)
    if not text and not calls:
        return  # an assistant turn of thinking only: nothing a chat provider can take
    msg: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        msg["tool_calls"] = calls
    out.append(msg)


def count_text(body: dict, provider: str = "the selected provider") -> tuple[list[dict], str]:
    """What ``count_tokens`` counts on a provider without its own: the chat messages (system
    included) and the chat tool definitions as JSON text ("" without tools)."""
    tools = _chat_tools(body.get("tools"), provider)
    return _chat_messages(body, provider), orjson.dumps(tools).decode() if tools else ""


# -- answer: chat -> Messages -------------------------------------------------------------------


def from_chat(answer: dict, model: str, stop_sequences: list[str] | None = None) -> dict:
    """A ``chat.completion`` as the Message Anthropic returns; ``model`` is the name the client asked for.

    ``stop_sequence`` is only known when the provider says which stop matched (vLLM's
    ``choices[].stop_reason``); otherwise a stop is ``end_turn``, as the chat form cannot tell.
    """
    choices = answer.get("choices") or ()
    choice = choices[0] if choices else {}
    message = choice.get("message") or {}
    content: list[dict] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    if isinstance(text, list):  # a few providers answer with content parts
        text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
    refusal = message.get("refusal")
    if not text and isinstance(refusal, str) and refusal:
        text = refusal
    if text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or msg_id(None, "toolu_"),
                "name": fn.get("name") or "",
                "input": parse_arguments(fn.get("arguments")),
            }
        )
    finish = choice.get("finish_reason")
    if refusal and not message.get("content"):
        finish = "content_filter"
    has_tools = bool(message.get("tool_calls"))
    reason, sequence = stop_reason(finish, has_tools, choice.get("stop_reason"), stop_sequences)
    return {
        "id": msg_id(answer.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage_from_chat(answer.get("usage")),
    }
