"""OpenAI Responses API <-> Chat Completions ("the chat form"), for providers that do not speak Responses.

Pure functions, no I/O. ``validate`` checks what the gateway interprets, ``to_chat`` builds the chat
request, ``from_chat`` and ``ResponsesStream`` build the Response (the oracle for every shape is the
openai SDK's ``openai.types.responses`` models), ``input_items``/``stored``/``history_of`` keep what
``previous_response_id`` and ``input_items.list`` need.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from gateway.apis.responses_stream import (
    INCOMPLETE,
    ResponsesStream,
    chat_tool_name,
    logprobs_of,
    new_id,
    response_object,
    responses_usage,
    tool_catalog,
    unwrap_custom_input,
    wants_logprobs,
)
from gateway.errors import GatewayError

__all__ = [
    "ResponsesStream",
    "from_chat",
    "history_of",
    "input_items",
    "stored",
    "to_chat",
    "validate",
]

_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")  # "max": the SDK's ReasoningEffort has it
_SUMMARIES = ("auto", "concise", "detailed")
_FORMATS = ("text", "json_object", "json_schema")
_TOOL_CHOICES = ("none", "auto", "required")
_ROLES = ("user", "assistant", "system", "developer")


# -- validate ---------------------------------------------------------------------------------
def _got(v: Any) -> str:
    if v is None:
        return "null"
    for t, name in ((bool, "a boolean"), (int, "an integer"), (float, "a decimal"), (str, "a string")):
        if isinstance(v, t):
            return name
    return "an array" if isinstance(v, list) else "an object" if isinstance(v, dict) else "an unknown type"


def _bad(param: str, message: str, code: str = "invalid_value") -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def _type(param: str, expected: str, v: Any) -> GatewayError:
    return _bad(param, f"Invalid type for '{param}': expected {expected}, but got {_got(v)} instead.", "invalid_type")


def _missing(param: str) -> GatewayError:
    return _bad(param, f"Missing required parameter: '{param}'.", "missing_required_parameter")


def _enum(param: str, v: Any, allowed: tuple[str, ...]) -> GatewayError:
    quoted = [f"'{a}'" for a in allowed]
    listed = ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 2 else " and ".join(quoted)
    return _bad(param, f"Invalid value: {v!r}. Supported values are: {listed}.")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(body: dict, param: str, lo: float, hi: float) -> None:
    v = body.get(param)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _type(param, "a number", v)
    if not lo <= v <= hi:
        side, bound = ("below minimum", f">= {lo:g}") if v < lo else ("above maximum", f"<= {hi:g}")
        kind = "integer" if _is_int(v) else "decimal"
        raise _bad(param, f"Invalid '{param}': {kind} {side} value. Expected a value {bound}, but got {v:g} instead.")


def _optional(body: dict, param: str, kind: type, expected: str, prefix: str = "") -> Any:
    v = body.get(param)
    if v is not None and (not isinstance(v, kind) or (kind is int and isinstance(v, bool))):
        raise _type(prefix + param, expected, v)
    return v


def validate(body: dict) -> None:
    """Raises ``GatewayError(400)`` in OpenAI's wording for the first bad field the gateway interprets."""
    if body.get("model") is None:
        raise _missing("model")
    _optional(body, "model", str, "a string")
    inp = body.get("input")
    if inp is None:
        if body.get("previous_response_id") is None:
            raise _missing("input")
    elif isinstance(inp, list):
        for i, item in enumerate(inp):
            if not isinstance(item, dict):
                raise _type(f"input[{i}]", "an object", item)
    elif not isinstance(inp, str):
        raise _type("input", "a string or an array of input items", inp)
    for param in ("instructions", "previous_response_id", "user", "safety_identifier"):
        _optional(body, param, str, "a string")
    for param in ("stream", "store", "parallel_tool_calls", "background"):
        _optional(body, param, bool, "a boolean")
    tools = _optional(body, "tools", list, "an array")
    for i, tool in enumerate(tools or ()):
        if not isinstance(tool, dict):
            raise _type(f"tools[{i}]", "an object", tool)
        if tool.get("type") is None:
            raise _missing(f"tools[{i}].type")
        _optional(tool, "type", str, "a string", f"tools[{i}].")
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise _enum("tool_choice", choice, _TOOL_CHOICES)
    elif choice is not None:
        if not isinstance(choice, dict):
            raise _type("tool_choice", "a string or an object", choice)
        if not isinstance(choice.get("type"), str):
            raise (
                _missing("tool_choice.type")
                if choice.get("type") is None
                else _type("tool_choice.type", "a string", choice["type"])
            )
    mot = _optional(body, "max_output_tokens", int, "an integer")
    if mot is not None and mot < 16:
        raise _bad(
            "max_output_tokens",
            f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got {mot} instead.",
        )
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    if _optional(body, "top_logprobs", int, "an integer") is not None:
        _number(body, "top_logprobs", 0, 20)
    _validate_text(body)
    _validate_reasoning(body)
    _validate_metadata(body)
    include = _optional(body, "include", list, "an array")
    for i, v in enumerate(include or ()):
        if not isinstance(v, str):
            raise _type(f"include[{i}]", "a string", v)


def _validate_text(body: dict) -> None:
    text = _optional(body, "text", dict, "an object")
    fmt = _optional(text or {}, "format", dict, "an object", "text.")
    if fmt is None:
        return
    kind = fmt.get("type")
    if kind is None:
        raise _missing("text.format.type")
    if kind not in _FORMATS:
        raise _enum("text.format.type", kind, _FORMATS)
    if kind == "json_schema":
        if fmt.get("name") is None:
            raise _missing("text.format.name")
        _optional(fmt, "name", str, "a string", "text.format.")
        if fmt.get("schema") is None:
            raise _missing("text.format.schema")
        _optional(fmt, "schema", dict, "an object", "text.format.")
        _optional(fmt, "strict", bool, "a boolean", "text.format.")


def _validate_reasoning(body: dict) -> None:
    reasoning = _optional(body, "reasoning", dict, "an object")
    if reasoning is None:
        return
    effort = reasoning.get("effort")
    if effort is not None and effort not in _EFFORTS:
        raise _enum("reasoning.effort", effort, _EFFORTS)
    for key in ("summary", "generate_summary"):
        v = reasoning.get(key)
        if v is not None and v not in _SUMMARIES:
            raise _enum(f"reasoning.{key}", v, _SUMMARIES)


def _validate_metadata(body: dict) -> None:
    meta = _optional(body, "metadata", dict, "an object")
    if meta is None:
        return
    if len(meta) > 16:
        raise _bad(
            "metadata",
            "Invalid 'metadata': too many properties. Expected an object with at most 16 properties, "
            f"but got an object with {len(meta)} properties instead.",
        )
    for k, v in meta.items():
        if len(k) > 64:
            raise _bad("metadata", f"Invalid 'metadata': key {k[:20]!r}... is longer than 64 characters.")
        if not isinstance(v, str):
            raise _type(f"metadata.{k}", "a string", v)
        if len(v) > 512:
            raise _bad(f"metadata.{k}", f"Invalid 'metadata.{k}': string too long. Expected at most 512 characters.")


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
    return _bad(param, f"{what} is not supported by provider '{provider}'{': ' + hint if hint else '.'}", code)


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
            raise _type(param, "an object", item)
        kind = item.get("type", "message")
        if kind == "message":
            self.message(item, param)
        elif kind in ("function_call", "custom_tool_call"):
            self.call(item, kind, param)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = item.get("call_id")
            if not isinstance(call_id, str):
                raise (
                    _missing(f"{param}.call_id") if call_id is None else _type(f"{param}.call_id", "a string", call_id)
                )
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
            raise _missing(f"{param}.role") if role is None else _enum(f"{param}.role", role, _ROLES)
        content = item.get("content")
        if isinstance(content, str):
            parts: list[dict] = [{"type": "text", "text": content}]
        elif isinstance(content, list):
            parts = [self.part(p, f"{param}.content[{j}]") for j, p in enumerate(content)]
        else:
            raise (
                _missing(f"{param}.content")
                if content is None
                else _type(f"{param}.content", "a string or an array", content)
            )
        texts = [p["text"] for p in parts if p["type"] == "text"]
        if role == "user":
            # One text part is sent as a plain string, which every chat server takes.
            self.add({"role": "user", "content": texts[0] if len(parts) == 1 and texts else parts})
            return
        if len(texts) != len(parts):
            raise _bad(f"{param}.content", f"Images are only supported in 'user' messages, not in '{role}' messages.")
        if role == "assistant":
            self.add({"role": "assistant", "content": "".join(texts)})
        else:
            # Most non-OpenAI chat servers reject the 'developer' role; 'system' means the same to them.
            self.add({"role": "system", "content": "\n\n".join(texts)})

    def part(self, p: Any, param: str) -> dict:
        if not isinstance(p, dict):
            raise _type(param, "an object", p)
        kind = p.get("type")
        if kind in ("input_text", "output_text", "text"):
            text = p.get("text")
            if not isinstance(text, str):
                raise _type(f"{param}.text", "a string", text)
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
            raise _missing(f"{param}.image_url")
        if kind == "input_file":
            raise _unsupported(param, "'input_file' content", self.provider, code="unsupported_value")
        raise _unsupported(param, f"The content type '{kind}'", self.provider, code="unsupported_value")

    def call(self, item: dict, kind: str, param: str) -> None:
        fields = ("call_id", "name", "arguments") if kind == "function_call" else ("call_id", "name", "input")
        for f in fields:
            if not isinstance(item.get(f), str):
                raise _missing(f"{param}.{f}") if item.get(f) is None else _type(f"{param}.{f}", "a string", item[f])
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
            raise (
                _missing(f"{param}.output")
                if output is None
                else _type(f"{param}.output", "a string or an array", output)
            )
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
                raise _type(f"{param}[{i}]", "an object", tool)
            inner_tools = tool.get("tools") if tool.get("type") == "namespace" else None
            ns = tool.get("name") if inner_tools is not None else None
            for j, inner in enumerate(inner_tools if isinstance(inner_tools, list) else [tool]):
                where = f"{param}[{i}].tools[{j}]" if inner_tools is not None else f"{param}[{i}]"
                if not isinstance(inner, dict):
                    raise _type(where, "an object", inner)
                if inner.get("type") in ("function", "custom") and not isinstance(inner.get("name"), str):
                    raise _missing(f"{where}.name")
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


# -- from_chat --------------------------------------------------------------------------------
def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # a few servers answer with parts
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    return ""


def from_chat(
    answer: dict, request: dict, resp_id: str, created_at: int, model: str, *, completed_at: int | None = None
) -> dict:
    """A Chat Completions answer -> the complete Response object (``model`` is the name the client asked for)."""
    choices = answer.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    reason = INCOMPLETE.get(choice.get("finish_reason") or "")
    output: list[dict] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        output.append(
            {"id": new_id("rs"), "type": "reasoning", "summary": [{"type": "summary_text", "text": reasoning}]}
        )
    content: list[dict] = []
    text = _text_of(message.get("content"))
    if text:
        lps = logprobs_of(choice.get("logprobs")) if wants_logprobs(request) else []
        content.append({"type": "output_text", "annotations": [], "logprobs": lps, "text": text})
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        content.append({"type": "refusal", "refusal": message["refusal"]})
    if content:
        output.append(
            {"id": new_id("msg"), "type": "message", "status": "completed", "content": content, "role": "assistant"}
        )
    catalog = tool_catalog(request)
    for tc in message.get("tool_calls") or ():
        fn = tc.get("function") if isinstance(tc, dict) and isinstance(tc.get("function"), dict) else {}
        chat_name = fn.get("name") if isinstance(fn.get("name"), str) else ""
        ns, name, kind = catalog.get(chat_name, (None, chat_name, "function"))
        args = fn.get("arguments") if isinstance(fn.get("arguments"), str) else ""
        call_id = tc.get("id") or new_id("call")
        if kind == "custom":
            item = {"id": new_id("ctc"), "type": "custom_tool_call", "status": "completed", "call_id": call_id}
            item.update(name=name, input=unwrap_custom_input(args))
        else:
            item = {"id": new_id("fc"), "type": "function_call", "status": "completed", "call_id": call_id}
            item.update(name=name, arguments=args)
        if ns:
            item["namespace"] = ns
        output.append(item)
    if reason and output and output[-1]["type"] != "reasoning":
        output[-1]["status"] = "incomplete"  # the item the cut fell in
    status = "incomplete" if reason else "completed"
    if status == "completed" and completed_at is None:
        completed_at = int(time.time())
    return response_object(
        request,
        resp_id,
        created_at,
        model,
        status,
        output,
        responses_usage(answer.get("usage")),
        incomplete_reason=reason,
        completed_at=completed_at if status == "completed" else None,
        service_tier=answer.get("service_tier"),
    )


# -- previous_response_id ---------------------------------------------------------------------
def stored(response: dict, items_in: list[dict]) -> dict:
    """What to keep for ``previous_response_id``; pass the earlier history plus this input as ``items_in``
    for a chain to reach back further than one response."""
    return {"input": items_in, "output": response["output"], "response": response}


def history_of(stored: dict) -> list[dict]:
    """The items to pass as ``history`` to ``to_chat`` for a request naming this response."""
    return [*stored["input"], *stored["output"]]
