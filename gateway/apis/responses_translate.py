"""OpenAI Responses API <-> Chat Completions ("the chat form"), for providers that do not speak Responses.

Pure functions, no I/O. ``validate`` (in ``responses_validate``) checks what the gateway interprets,
``to_chat`` builds the chat request, ``from_chat`` (in ``responses_object``) and ``ResponsesStream``
build the Response (the oracle for every shape is the openai SDK's ``openai.types.responses`` models),
``input_items``/``stored``/``history_of`` keep what ``previous_response_id`` and
``input_items.list`` need.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.apis.responses_object import chat_tool_name, from_chat, new_id, tool_catalog, wants_logprobs
from gateway.apis.responses_stream import ResponsesStream
from gateway.apis.responses_validate import bad, enum_error, required, validate
from gateway.errors import GatewayError, missing
from gateway.pipeline.validate import type_error

__all__ = [
    "ResponsesStream",
    "from_chat",
    "history_of",
    "input_items",
    "stored",
    "to_chat",
    "validate",
]

_ROLES = ("user", "assistant", "system", "developer")


# -- input items ------------------------------------------------------------------------------
_ID_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
    "reasoning": "rs",
    "additional_tools": "at",
}
_STATUS_ITEMS = ("message", "function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output")


def input_items(body: dict) -> list[dict]:
    """The request's ``input`` as ``client.responses.input_items.list()`` shows it (ids and statuses filled in)."""
    inp = body.get("input")
    if isinstance(inp, str):
        return [_message_item("user", [{"type": "input_text", "text": inp}])]
    out = []
    for raw in inp if isinstance(inp, list) else ():
        item = dict(raw)
        kind = item.setdefault("type", "message")
        if kind == "message":
            role = item.get("role", "user")
            content = item.get("content")
            if isinstance(content, str):
                part = (
                    {"type": "output_text", "text": content, "annotations": []}
                    if role == "assistant"
                    else {"type": "input_text", "text": content}
                )
                item["content"] = [part]
            elif isinstance(content, list):
                item["content"] = [_listed_part(p) for p in content]
        if not item.get("id"):
            item["id"] = new_id(_ID_PREFIX.get(kind, "item"))
        if kind in _STATUS_ITEMS and not item.get("status"):
            item["status"] = "completed"
        out.append(item)
    return out


def _listed_part(p: Any) -> Any:
    """The listing's input_image always carries a detail, its output_text annotations."""
    if isinstance(p, dict):
        if p.get("type") == "input_image" and not p.get("detail"):
            return dict(p, detail="auto")
        if p.get("type") == "output_text" and "annotations" not in p:
            return dict(p, annotations=[])
    return p


def _message_item(role: str, content: list[dict]) -> dict:
    return {"type": "message", "role": role, "content": content, "id": new_id("msg"), "status": "completed"}


# -- to_chat ----------------------------------------------------------------------------------
def _unsupported(
    param: str, what: str, provider: str, hint: str = "", code: str = "unsupported_parameter"
) -> GatewayError:
    return bad(param, f"{what} is not supported by provider '{provider}'{': ' + hint if hint else '.'}", code)


class _Messages:
    """Builds chat messages from Responses items, in order."""

    __slots__ = ("extra_tools", "messages", "pending_images", "provider")

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.messages: list[dict] = []
        self.extra_tools: list[tuple[str, list]] = []  # (param, tools) from additional_tools items
        self.pending_images: list[dict] = []  # images from tool outputs, sent after the tool messages

    def add(self, msg: dict) -> None:
        if self.pending_images and msg["role"] != "tool":
            self.flush()
        self.messages.append(msg)

    def flush(self) -> None:
        if self.pending_images:
            # Chat tool messages carry text only, so a tool's images follow as a user message.
            images, self.pending_images = self.pending_images, []
            self.messages.append({"role": "user", "content": images})

    def item(self, item: Any, param: str) -> None:
        if not isinstance(item, dict):
            raise type_error(param, "an object", item)
        kind = item.get("type", "message")
        if kind == "message":
            self.message(item, param)
        elif kind in ("function_call", "custom_tool_call"):
            self.call(item, kind, param)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = item.get("call_id")
            if not isinstance(call_id, str):
                raise required(f"{param}.call_id", "a string", call_id)
            self.add({"role": "tool", "tool_call_id": call_id, "content": self.tool_output(item.get("output"), param)})
        elif kind == "reasoning":
            pass  # the model's own earlier reasoning: chat providers cannot take it back
        elif kind == "additional_tools":
            self.extra_tools.append((f"{param}.tools", item.get("tools") or []))
        else:
            hint = "send the referenced items themselves." if kind == "item_reference" else ""
            raise _unsupported(param, f"The input item type '{kind}'", self.provider, hint, "unsupported_value")

    def message(self, item: dict, param: str) -> None:
        role = item.get("role")
        if role not in _ROLES:
            raise missing(f"{param}.role") if role is None else enum_error(f"{param}.role", role, _ROLES)
        content = item.get("content")
        if isinstance(content, str):
            parts: list[dict] = [{"type": "text", "text": content}]
        elif isinstance(content, list):
            parts = [self.part(p, f"{param}.content[{j}]") for j, p in enumerate(content)]
        else:
            raise required(f"{param}.content", "a string or an array", content)
        texts = [p["text"] for p in parts if p["type"] == "text"]
        if role == "user":
            # One text part is sent as a plain string, which every chat server takes.
            self.add({"role": "user", "content": texts[0] if len(parts) == 1 and texts else parts})
            return
        if len(texts) != len(parts):
            raise bad(f"{param}.content", f"Images are only supported in 'user' messages, not in '{role}' messages.")
        if role == "assistant":
            self.add({"role": "assistant", "content": "".join(texts)})
        else:
            # Most non-OpenAI chat servers reject the 'developer' role; 'system' means the same to them.
            self.add({"role": "system", "content": "\n\n".join(texts)})

    def part(self, p: Any, param: str) -> dict:
        if not isinstance(p, dict):
            raise type_error(param, "an object", p)
        kind = p.get("type")
        if kind in ("input_text", "output_text", "text"):
            text = p.get("text")
            if not isinstance(text, str):
                raise type_error(f"{param}.text", "a string", text)
            return {"type": "text", "text": text}
        if kind == "refusal":
            return {"type": "text", "text": p.get("refusal") or ""}
        if kind == "input_image":
            url = p.get("image_url")
            if isinstance(url, str) and url:
                image: dict[str, Any] = {"url": url}
                if p.get("detail"):
                    image["detail"] = p["detail"]
                return {"type": "image_url", "image_url": image}
            if p.get("file_id") is not None:
                hint = "send the image as 'image_url' (a URL or a data URL)."
                raise _unsupported(f"{param}.file_id", "An image given by 'file_id'", self.provider, hint)
            raise missing(f"{param}.image_url")
        if kind == "input_file":
            raise _unsupported(param, "'input_file' content", self.provider, code="unsupported_value")
        raise _unsupported(param, f"The content type '{kind}'", self.provider, code="unsupported_value")

    def call(self, item: dict, kind: str, param: str) -> None:
        fields = ("call_id", "name", "arguments") if kind == "function_call" else ("call_id", "name", "input")
        for f in fields:
            if not isinstance(item.get(f), str):
                raise required(f"{param}.{f}", "a string", item.get(f))
        name = chat_tool_name(item.get("namespace"), item["name"])
        args = item["arguments"] if kind == "function_call" else orjson.dumps({"input": item["input"]}).decode()
        tc = {"id": item["call_id"], "type": "function", "function": {"name": name, "arguments": args}}
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "assistant" and not self.pending_images:
            last.setdefault("tool_calls", []).append(tc)  # consecutive calls, or text then calls: one turn
        else:
            self.add({"role": "assistant", "content": None, "tool_calls": [tc]})

    def tool_output(self, output: Any, param: str) -> str:
        if isinstance(output, str):
            return output
        if not isinstance(output, list):
            raise required(f"{param}.output", "a string or an array", output)
        texts = []
        for j, p in enumerate(output):
            part = self.part(p, f"{param}.output[{j}]")
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                self.pending_images.append(part)
        return "\n".join(texts)


def _chat_function(name: str, tool: dict, param: str, provider: str) -> dict:
    kind = tool.get("type")
    fn: dict[str, Any] = {"name": name}
    if tool.get("description") is not None:
        fn["description"] = tool["description"]
    if kind == "function":
        if tool.get("parameters") is not None:
            fn["parameters"] = tool["parameters"]
        if tool.get("strict") is not None:
            fn["strict"] = tool["strict"]
    elif kind == "custom":
        fmt = tool.get("format")
        if isinstance(fmt, dict) and fmt.get("type") == "grammar":
            # The chat form cannot enforce a grammar; telling the model is the next best thing.
            rule = f"The 'input' must match this {fmt.get('syntax', '')} grammar:\n{fmt.get('definition', '')}"
            fn["description"] = f"{fn['description']}\n\n{rule}" if fn.get("description") else rule
        # The chat form has no free-form input: a custom tool becomes a function of one string (built
        # fresh each time, as adapters may edit schemas in place).
        fn["parameters"] = {
            "type": "object",
            "properties": {"input": {"type": "string"}},
            "required": ["input"],
            "additionalProperties": False,
        }
    else:
        hint = "only 'function', 'custom' and 'namespace' tools can be translated to Chat Completions."
        raise _unsupported(param, f"The tool '{kind}'", provider, hint)
    return {"type": "function", "function": fn}


def _chat_tools(groups: list[tuple[str, list]], provider: str) -> dict[str, dict]:
    """chat name -> chat tool, from ``tools`` and ``additional_tools`` (a later definition replaces an earlier)."""
    out: dict[str, dict] = {}
    for param, tools in groups:
        for i, tool in enumerate(tools if isinstance(tools, list) else ()):
            if not isinstance(tool, dict):
                raise type_error(f"{param}[{i}]", "an object", tool)
            inner_tools = tool.get("tools") if tool.get("type") == "namespace" else None
            ns = tool.get("name") if inner_tools is not None else None
            for j, inner in enumerate(inner_tools if isinstance(inner_tools, list) else [tool]):
                where = f"{param}[{i}].tools[{j}]" if inner_tools is not None else f"{param}[{i}]"
                if not isinstance(inner, dict):
                    raise type_error(where, "an object", inner)
                if inner.get("type") in ("function", "custom") and not isinstance(inner.get("name"), str):
                    raise missing(f"{where}.name")
                name = chat_tool_name(ns, inner.get("name") or "")
                out[name] = _chat_function(name, inner, param, provider)
    return out


def _chat_tool_choice(choice: Any, tools: dict[str, dict], body: dict, provider: str) -> Any:
    if isinstance(choice, str) or choice is None:
        return choice
    kind = choice.get("type")
    if kind in ("function", "custom") and isinstance(choice.get("name"), str):
        name = choice["name"]
        if name not in tools:  # a namespaced tool named by its inner name
            found = [chat for chat, (ns, inner, _) in tool_catalog(body).items() if ns and inner == name]
            name = found[0] if len(found) == 1 else name
        return {"type": "function", "function": {"name": name}}
    raise _unsupported("tool_choice", f"The tool choice '{kind}'", provider)


def to_chat(body: dict, history: list[dict], provider: str) -> dict:
    """A validated Responses request (after ``history``, the earlier items) -> a Chat Completions request."""
    _refuse_untranslatable(body, provider)
    conv = _Messages(provider)
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        conv.add({"role": "system", "content": body["instructions"]})
    for item in history:
        conv.item(item, "previous_response_id")
    inp = body.get("input")
    if isinstance(inp, str):
        conv.add({"role": "user", "content": inp})
    else:
        for i, item in enumerate(inp or ()):
            conv.item(item, f"input[{i}]")
    conv.flush()

    chat: dict[str, Any] = {"model": body["model"], "messages": conv.messages}
    tools = _chat_tools([("tools", body.get("tools") or []), *conv.extra_tools], provider)
    if tools:
        # tool_choice and parallel_tool_calls are refused by chat servers when no tools are sent.
        chat["tools"] = list(tools.values())
        if body.get("tool_choice") is not None:
            chat["tool_choice"] = _chat_tool_choice(body["tool_choice"], tools, body, provider)
        if body.get("parallel_tool_calls") is not None:
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    for key in ("temperature", "top_p", "user"):
        if body.get(key) is not None:
            chat[key] = body[key]
    if "user" not in chat and isinstance(body.get("safety_identifier"), str):
        chat["user"] = body["safety_identifier"]
    if wants_logprobs(body):
        chat["logprobs"] = True
        if body.get("top_logprobs"):
            chat["top_logprobs"] = body["top_logprobs"]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    effort = (body.get("reasoning") or {}).get("effort")
    if effort is not None:
        chat["reasoning_effort"] = effort  # the adapter refuses it if its dialect cannot honour it
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def _refuse_untranslatable(body: dict, provider: str) -> None:
    """Generation settings the chat form cannot carry are refused rather than silently dropped."""
    verbosity = (body.get("text") or {}).get("verbosity")
    if verbosity not in (None, "medium"):
        raise _unsupported("text.verbosity", "The parameter 'text.verbosity'", provider)
    if body.get("truncation") not in (None, "disabled"):
        raise _unsupported("truncation", "The parameter 'truncation' (other than 'disabled')", provider)
    if body.get("background") is True:
        raise _unsupported("background", "Background mode", provider)
    for param in ("prompt", "conversation"):
        if body.get(param) is not None:
            raise _unsupported(param, f"The parameter '{param}'", provider)
    if body.get("service_tier") not in (None, "auto", "default"):
        raise _unsupported("service_tier", f"The service tier {body['service_tier']!r}", provider)


# -- previous_response_id ---------------------------------------------------------------------
def stored(response: dict, items_in: list[dict]) -> dict:
    """What to keep for ``previous_response_id``; pass the earlier history plus this input as ``items_in``
    for a chain to reach back further than one response."""
    return {"input": items_in, "output": response["output"], "response": response}


def history_of(stored: dict) -> list[dict]:
    """The items to pass as ``history`` to ``to_chat`` for a request naming this response."""
    return [*stored["input"], *stored["output"]]
