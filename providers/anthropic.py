"""Anthropic Messages dialect: OpenAI chat and legacy completions over ``POST /v1/messages``.

Every OpenAI request field goes through one table (``CHAT_PARAMS`` / ``COMPLETION_PARAMS``): a
handler writes the Anthropic field or refuses with a 400 naming the parameter. A field missing
from the table is refused too: silently dropping what a client asked for would change its
results without telling it. Answers come back as ``chat.completion`` / ``text_completion``;
streams are translated event by event from the documented sequence (message_start,
content_block_start/delta/stop, message_delta, message_stop).

Sources: https://platform.claude.com/docs/en/api/messages,
https://platform.claude.com/docs/en/build-with-claude/streaming,
https://platform.claude.com/docs/en/agents-and-tools/tool-use/implement-tool-use,
https://platform.claude.com/docs/en/build-with-claude/structured-outputs,
https://platform.claude.com/docs/en/api/errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gateway.errors import GatewayError, invalid
from providers.base import (
    CHAT,
    COMPLETIONS,
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

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
# Anthropic requires max_tokens. Without one from the request or the model's config, chat gets 4096
# (room for a long answer, within every current Claude model's output limit) and legacy completions
# keep OpenAI's documented default of 16 (seed 000), so answers are as long as on OpenAI.
DEFAULT_MAX_TOKENS = {CHAT: 4096, COMPLETIONS: 16}
# The forced tool that carries a json_object answer: Anthropic has no schemaless JSON mode, and its
# tool-use docs show this pattern for JSON output. Its input comes back as the message content.
JSON_TOOL = "json_answer"
_JSON_TOOL_DEF = {
    "name": JSON_TOOL,
    "description": "Give the complete answer as a JSON object.",
    "input_schema": {"type": "object"},
}

FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

Handler = Callable[["_Build", str, Any], None]


class _Build:
    """One request under translation: the Anthropic body being written, and what the way back needs."""

    __slots__ = ("adapter", "ctx", "out")

    def __init__(self, adapter: AnthropicAdapter, ctx: CallContext, out: dict[str, Any]) -> None:
        self.adapter = adapter
        self.ctx = ctx
        self.out = out

    # -- messages ------------------------------------------------------------------------------
    def messages(self, msgs: list[dict[str, Any]]) -> None:
        """System/developer messages -> top-level ``system``; the rest -> alternating user/assistant turns."""
        system: list[dict[str, Any]] = []
        turns: list[dict[str, Any]] = []
        for i, m in enumerate(msgs):
            where = f"messages[{i}]"
            role = m["role"]
            if role in ("system", "developer"):
                system.extend(_text_blocks(m.get("content"), where))
            elif role == "user":
                _add_turn(turns, "user", self._user_blocks(m.get("content"), where))
            elif role == "assistant":
                _add_turn(turns, "assistant", _assistant_blocks(m, where))
            elif role == "tool":
                _add_turn(turns, "user", [_tool_result(m, where)])
            else:
                raise invalid(
                    f"Invalid value for '{where}.role': '{role}'. Supported values are: "
                    "'system', 'developer', 'user', 'assistant' and 'tool'.",
                    f"{where}.role",
                    "invalid_value",
                )
        if system:
            self.out["system"] = _collapse(system)
        self.out["messages"] = [{"role": t["role"], "content": _collapse(t["content"])} for t in turns]

    def _user_blocks(self, content: Any, where: str) -> list[dict[str, Any]]:
        if not isinstance(content, list):
            return _text_blocks(content, where)
        blocks = []
        for j, part in enumerate(content):
            w = f"{where}.content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                if text := _part_text(part, w):
                    blocks.append({"type": "text", "text": text})
            elif kind == "image_url":
                blocks.append(_image(part.get("image_url"), w))
            elif kind == "file":
                blocks.append(self._document(part.get("file"), w))
            elif kind == "input_audio":
                raise self.adapter.unsupported(w, "Anthropic models take no audio input")
            else:
                raise invalid(f"Invalid value for '{w}.type': {kind!r}.", f"{w}.type", "invalid_value")
        return blocks

    def _document(self, file: Any, where: str) -> dict[str, Any]:
        """A PDF given inline (``file_data`` data URL) -> a base64 document block."""
        data = file.get("file_data") if isinstance(file, dict) else None
        media_type, payload = _data_url(data) if isinstance(data, str) else ("", "")
        if media_type != "application/pdf":
            raise self.adapter.unsupported(where, "Anthropic reads files given inline as a PDF data URL only")
        return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": payload}}

    # -- tools ---------------------------------------------------------------------------------
    def tools(self, body: dict[str, Any]) -> None:
        tools, choice = body.get("tools"), body.get("tool_choice")
        if not tools:
            if choice in (None, "none", "auto"):
                return
            raise invalid("'tool_choice' is only allowed when 'tools' are specified.", "tool_choice", "invalid_value")
        if not isinstance(tools, list):
            raise invalid("Invalid type for 'tools': expected an array.", "tools", "invalid_type")
        self.out["tools"] = [self._tool(t, f"tools[{i}]") for i, t in enumerate(tools)]
        tc = self._tool_choice(choice)
        if body.get("parallel_tool_calls") is False and (tc is None or tc["type"] != "none"):
            tc = {**(tc or {"type": "auto"}), "disable_parallel_tool_use": True}
        if tc is not None:
            self.out["tool_choice"] = tc

    def _tool(self, tool: Any, where: str) -> dict[str, Any]:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise self.adapter.unsupported(f"{where}.type", "only function tools can be sent to Anthropic")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise invalid(
                f"Missing required parameter: '{where}.function.name'.",
                f"{where}.function.name",
                "missing_required_parameter",
            )
        out: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            out["description"] = fn["description"]
        out["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
        if fn.get("strict") is True:
            out["strict"] = True  # Anthropic's strict tool use: the same schema guarantee
        return out

    def _tool_choice(self, choice: Any) -> dict[str, Any] | None:
        if choice is None:
            return None
        simple = {"none": "none", "auto": "auto", "required": "any"}
        if isinstance(choice, str) and choice in simple:
            return {"type": simple[choice]}
        if isinstance(choice, dict) and choice.get("type") == "function":
            name = (choice.get("function") or {}).get("name")
            if isinstance(name, str):
                return {"type": "tool", "name": name}
        if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
            raise self.adapter.unsupported("tool_choice", "Anthropic has no allowed_tools choice")
        raise invalid(
            "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or "
            '{"type": "function", "function": {"name": ...}}.',
            "tool_choice",
            "invalid_value",
        )

    # -- response_format -----------------------------------------------------------------------
    def response_format(self, rf: Any) -> None:
        """json_schema -> ``output_config.format`` (structured outputs); json_object -> a forced tool."""
        if rf is None:
            return
        kind = rf.get("type") if isinstance(rf, dict) else None
        if kind == "text":
            return
        if kind == "json_schema":
            js = rf.get("json_schema")
            schema = js.get("schema") if isinstance(js, dict) else None
            if not isinstance(schema, dict):
                raise invalid(
                    "Missing required parameter: 'response_format.json_schema.schema'.",
                    "response_format.json_schema.schema",
                    "missing_required_parameter",
                )
        elif kind == "json_object":
            schema = rf.get("schema")  # the Fireworks-style completions form (seed 001) may carry one
            if schema is not None and not isinstance(schema, dict):
                raise invalid(
                    "Invalid type for 'response_format.schema': expected an object.", "response_format.schema"
                )
        else:
            raise invalid(
                f"Invalid value for 'response_format.type': {kind!r}. Supported: 'text', 'json_object', 'json_schema'.",
                "response_format.type",
                "invalid_value",
            )
        if schema is not None:
            self.out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
            return
        if self.out.get("tools"):
            raise self.adapter.unsupported(
                "response_format", "json_object cannot be combined with tools on Anthropic; give a json_schema instead"
            )
        self.out["tools"] = [_JSON_TOOL_DEF]
        self.out["tool_choice"] = {"type": "tool", "name": JSON_TOOL}
        self.ctx.extra["json_tool"] = True

    # -- completions ---------------------------------------------------------------------------
    def prompt(self, prompt: Any) -> None:
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise self.adapter.unsupported(
                "prompt", "Anthropic takes one text prompt per request, not several prompts or token ids"
            )
        self.out["messages"] = [{"role": "user", "content": prompt}]


# -- content helpers ----------------------------------------------------------------------------
def _text_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """A string or a list of text (or refusal) parts -> text blocks; empty text is left out (the API refuses it)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise invalid(f"Invalid type for '{where}.content': expected a string or an array.", f"{where}.content")
    texts = (_part_text(part, f"{where}.content[{j}]") for j, part in enumerate(content))
    return [{"type": "text", "text": t} for t in texts if t]


def _part_text(part: Any, where: str) -> str:
    """The text of a text (or an assistant's refusal) content part."""
    kind = part.get("type") if isinstance(part, dict) else None
    text = part.get(kind) if kind in ("text", "refusal") else None
    if not isinstance(text, str):
        raise invalid(f"Invalid value for '{where}': only text parts are allowed here.", where, "invalid_value")
    return text


def _data_url(url: str) -> tuple[str, str]:
    """``data:<media type>;base64,<data>`` -> (media type, data); ("", "") when it is not that form."""
    head, sep, data = url[5:].partition(",") if url.startswith("data:") else ("", "", "")
    media_type, _, encoding = head.partition(";")
    return (media_type, data) if sep and encoding == "base64" and media_type and data else ("", "")


def _image(image_url: Any, where: str) -> dict[str, Any]:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if isinstance(url, str) and url.startswith("data:"):
        media_type, data = _data_url(url)
        if media_type:
            return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    elif isinstance(url, str) and url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise invalid(
        f"Invalid '{where}.image_url.url': expected a base64 data URL (data:image/png;base64,...) or an http(s) URL.",
        f"{where}.image_url.url",
        "invalid_value",
    )


def _assistant_blocks(m: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks = _text_blocks(m.get("content"), where)
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


def _tool_result(m: dict[str, Any], where: str) -> dict[str, Any]:
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
    elif blocks := _text_blocks(content, where):
        block["content"] = blocks
    return block


def _add_turn(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
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


def _collapse(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A lone plain text block is sent as a plain string, as in Anthropic's own examples."""
    if len(blocks) == 1 and blocks[0].keys() == {"type", "text"} and blocks[0]["type"] == "text":
        return blocks[0]["text"]
    return blocks


# -- the parameter table ------------------------------------------------------------------------
def _skip(b: _Build, name: str, value: Any) -> None:
    """Handled by the builder itself (or the gateway's own field)."""


def _same(b: _Build, name: str, value: Any) -> None:
    b.out[name] = value


def _stream(b: _Build, name: str, value: Any) -> None:
    if value is True:
        b.out["stream"] = True


def _temperature(b: _Build, name: str, value: Any) -> None:
    if value > 1:
        raise GatewayError(
            400,
            f"Invalid 'temperature': provider '{b.adapter.name}' (anthropic) accepts 0 to 1, but got {value:g}.",
            param="temperature",
            code="invalid_value",
        )
    b.out["temperature"] = value


def _stop(b: _Build, name: str, value: Any) -> None:
    stops = [value] if isinstance(value, str) else value
    if stops:
        b.out["stop_sequences"] = stops


def _user(b: _Build, name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise invalid(f"Invalid type for '{name}': expected a string.", name, "invalid_type")
    b.out["metadata"] = {"user_id": value}


_SERVICE_TIERS = {"auto": "auto", "default": "standard_only"}


def _service_tier(b: _Build, name: str, value: Any) -> None:
    if value not in _SERVICE_TIERS:
        raise b.adapter.unsupported(name, "Anthropic offers 'auto' and 'default' (standard capacity only)")
    b.out["service_tier"] = _SERVICE_TIERS[value]


def _only(ok: Callable[[Any], bool], why: str) -> Handler:
    """Accept the value that asks for nothing Anthropic lacks (n=1, penalties 0...); refuse the rest."""

    def check(b: _Build, name: str, value: Any) -> None:
        if not ok(value):
            raise b.adapter.unsupported(name, why)

    return check


def _never(why: str) -> Handler:
    return _only(lambda _v: False, why)


# OpenAI field -> Anthropic. A null value counts as absent; a field not listed is refused.
CHAT_PARAMS: dict[str, Handler] = {
    "model": _skip,  # -> model = target.upstream_model
    "messages": _skip,  # -> system + messages (_Build.messages)
    "max_completion_tokens": _skip,  # -> max_tokens (_max_tokens)
    "max_tokens": _skip,  # -> max_tokens
    "tools": _skip,  # -> tools [{name, description, input_schema, strict}] (_Build.tools)
    "tool_choice": _skip,  # none/auto/required/{function} -> none/auto/any/{type: tool, name}
    "parallel_tool_calls": _skip,  # false -> tool_choice.disable_parallel_tool_use
    "response_format": _skip,  # json_schema -> output_config.format; json_object -> forced tool
    "stream_options": _skip,  # the gateway's: usage comes from message_start/message_delta
    "context_length_exceeded_behavior": _skip,  # the gateway's own (DESIGN §1), never forwarded
    "stream": _stream,  # -> stream
    "temperature": _temperature,  # -> temperature, 0..1 on Anthropic
    "top_p": _same,  # -> top_p
    "top_k": _same,  # -> top_k (Anthropic's own sampling knob)
    "stop": _stop,  # string or list -> stop_sequences
    "user": _user,  # -> metadata.user_id
    "safety_identifier": _user,  # OpenAI's successor of user -> metadata.user_id
    "service_tier": _service_tier,  # auto -> auto, default -> standard_only
    "n": _only(lambda v: v == 1, "Anthropic returns one choice per request"),
    "logprobs": _only(lambda v: v is False, "Anthropic does not return log probabilities"),
    "top_logprobs": _never("Anthropic does not return log probabilities"),
    "logit_bias": _only(lambda v: not v, "Anthropic has no logit bias"),
    "presence_penalty": _only(lambda v: v == 0, "Anthropic has no presence penalty"),
    "frequency_penalty": _only(lambda v: v == 0, "Anthropic has no frequency penalty"),
    "seed": _never("Anthropic has no seed, so answers cannot be made reproducible"),
    "audio": _never("Anthropic models do not produce audio"),
    "modalities": _only(lambda v: v == ["text"], "Anthropic models produce text only"),
    "store": _only(lambda v: v is False, "Anthropic does not store completions"),
    "metadata": _only(lambda v: not v, "Anthropic's metadata holds only a user id; send 'user'"),
    "reasoning_effort": _never("extended thinking cannot be expressed through the OpenAI chat API"),
    "verbosity": _never("Anthropic has no verbosity setting"),
    "prediction": _never("Anthropic has no predicted outputs"),
    "web_search_options": _never("use a model of a provider with OpenAI's web search"),
    "prompt_cache_key": _never("Anthropic caches by cache_control breakpoints, not by key"),
    "functions": _never("deprecated by OpenAI; send 'tools'"),
    "function_call": _never("deprecated by OpenAI; send 'tool_choice'"),
}

COMPLETION_PARAMS: dict[str, Handler] = {
    **{
        k: CHAT_PARAMS[k]
        for k in (
            "model",
            "max_tokens",
            "response_format",
            "stream",
            "stream_options",
            "context_length_exceeded_behavior",
            "temperature",
            "top_p",
            "top_k",
            "stop",
            "user",
            "n",
            "logit_bias",
            "presence_penalty",
            "frequency_penalty",
            "seed",
        )
    },
    "prompt": _skip,  # one string (or a list of one) -> one user message
    "echo": _only(lambda v: v is False, "Anthropic cannot echo the prompt"),
    "logprobs": _never("Anthropic does not return log probabilities"),
    "suffix": _only(lambda v: v == "", "Anthropic has no insertion (suffix) mode"),
    "best_of": _only(lambda v: v == 1, "Anthropic returns one completion per request"),
    "images": _never("send images through /v1/chat/completions as image_url parts"),
}


def _max_tokens(endpoint: str, body: dict[str, Any], target: Target) -> int:
    for param in ("max_completion_tokens", "max_tokens") if endpoint == CHAT else ("max_tokens",):
        value = body.get(param)
        if value is not None:
            if value < 1:
                raise invalid(
                    f"Invalid '{param}': Anthropic needs at least 1, but got {value}.", param, "invalid_value"
                )
            return value
    return target.default_max_tokens or DEFAULT_MAX_TOKENS[endpoint]


# -- the way back -------------------------------------------------------------------------------
def _finish(stop_reason: Any, json_tool: bool) -> str:
    if json_tool and stop_reason == "tool_use":
        return "stop"  # the forced JSON tool is the answer, not a call for the client to run
    return FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _usage(u: dict[str, Any]) -> dict[str, Any]:
    """Anthropic counts cache writes and reads apart from input_tokens; OpenAI's prompt_tokens holds them all."""
    cache_read = _int(u.get("cache_read_input_tokens"))
    cache_write = _int(u.get("cache_creation_input_tokens"))
    prompt = _int(u.get("input_tokens")) + cache_write + cache_read
    return usage_dict(prompt, _int(u.get("output_tokens")), prompt_tokens_details=_details(cache_read, cache_write))


def _details(cache_read: int, cache_write: int) -> dict[str, int]:
    """``cached_tokens`` as OpenAI's; cache writes (billed dearer by Anthropic) as ``cache_write_tokens``,
    the Responses API's name for them, only when there are any."""
    details = {"cached_tokens": cache_read}
    if cache_write:
        details["cache_write_tokens"] = cache_write
    return details


class AnthropicStream(StreamTranslator):
    """Messages stream events -> OpenAI chunks; one chunk id (Anthropic's message id) for the whole stream.

    Thinking blocks (thinking_delta, signature_delta) and server-tool blocks are not part of an
    OpenAI answer and are skipped, as are ``ping`` and event types newer than this code.
    """

    __slots__ = (
        "blocks",
        "cache_read",
        "cache_write",
        "completion",
        "content_chunks",
        "ctx",
        "endpoint",
        "finished",
        "id",
        "input",
        "json_tool",
        "name",
        "tools",
        "usage",
    )

    def __init__(self, name: str, endpoint: str, ctx: CallContext) -> None:
        self.name = name
        self.endpoint = endpoint
        self.ctx = ctx
        self.json_tool = bool(ctx.extra.get("json_tool"))
        self.id = new_id("msg_")
        # upstream content block index -> ("text" | "tool" | "json", OpenAI tool_calls index)
        self.blocks: dict[int, tuple[str, int]] = {}
        self.tools = 0
        self.input = self.cache_write = self.cache_read = self.completion = 0
        self.usage = None
        self.finished = False
        self.content_chunks = 0

    def feed(self, event: SSEEvent) -> list[bytes]:
        if not event.data:
            return []
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise GatewayError(
                502, f"{self.name}: the upstream sent a malformed stream event", code="upstream_bad_response"
            )
        handler = _EVENTS.get(data.get("type") or event.event or "")
        return handler(self, data) if handler is not None else []

    # -- events ------------------------------------------------------------------------------
    def _message_start(self, data: dict[str, Any]) -> list[bytes]:
        msg = data.get("message") if isinstance(data.get("message"), dict) else {}
        if isinstance(msg.get("id"), str):
            self.id = msg["id"]
        self._take_usage(msg.get("usage"))
        return [] if self.endpoint == COMPLETIONS else [self._chat({"role": "assistant", "content": ""})]

    def _block_start(self, data: dict[str, Any]) -> list[bytes]:
        block = data.get("content_block") if isinstance(data.get("content_block"), dict) else {}
        index, kind = data.get("index"), block.get("type")
        if kind == "text":
            self.blocks[index] = ("text", 0)
            return self._content(block.get("text"))
        if kind != "tool_use":
            return []  # thinking, redacted_thinking, server-tool blocks
        if self.json_tool and block.get("name") == JSON_TOOL:
            self.blocks[index] = ("json", 0)
            return []
        self.blocks[index] = ("tool", self.tools)
        call = {"index": self.tools, "id": block.get("id"), "type": "function"}
        call["function"] = {"name": block.get("name"), "arguments": ""}
        self.tools += 1
        return [self._chat({"tool_calls": [call]})] if self.endpoint == CHAT else []

    def _block_delta(self, data: dict[str, Any]) -> list[bytes]:
        kind, tool_index = self.blocks.get(data.get("index"), ("", 0))
        delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
        if delta.get("type") == "text_delta" and kind == "text":
            return self._content(delta.get("text"))
        if delta.get("type") != "input_json_delta":
            return []  # thinking_delta, signature_delta, citations_delta
        part = delta.get("partial_json")
        if kind == "json":
            return self._content(part)
        if kind != "tool" or not part or self.endpoint != CHAT:
            return []
        self.content_chunks += 1
        return [self._chat({"tool_calls": [{"index": tool_index, "function": {"arguments": part}}]})]

    def _message_delta(self, data: dict[str, Any]) -> list[bytes]:
        self._take_usage(data.get("usage"))
        reason = (data.get("delta") or {}).get("stop_reason")
        if reason is None:
            return []
        finish = _finish(reason, self.json_tool)
        if self.endpoint == COMPLETIONS:
            return [self._text_completion([{"text": "", "index": 0, "logprobs": None, "finish_reason": finish}])]
        return [self._chat({}, finish)]

    def _message_stop(self, data: dict[str, Any]) -> list[bytes]:
        self.finished = True
        if not self.ctx.include_usage:
            return []
        usage = self.usage or usage_dict(0, 0)
        if self.endpoint == COMPLETIONS:
            return [self._text_completion([], usage)]
        return [orjson.dumps(chat_chunk(self.ctx, self.id, [], usage))]

    def _error(self, data: dict[str, Any]) -> list[bytes]:
        err = data.get("error") if isinstance(data.get("error"), dict) else {}
        kind = str(err.get("type") or "api_error")
        overloaded = kind == "overloaded_error"
        # overloaded_error is a 529 outside a stream: 503, the status OpenAI SDKs treat as retryable.
        # The metrics reason is fixed, never the upstream's string, so its label values stay bounded.
        raise GatewayError(
            503 if overloaded else 502,
            f"{self.name}: {err.get('message') or kind}",
            type=kind,
            code=kind,
            reason="stream_overloaded" if overloaded else "stream_error",
        )

    # -- helpers -----------------------------------------------------------------------------
    def _take_usage(self, u: Any) -> None:
        """Counts are cumulative; message_delta may repeat the input counts, so each one overwrites."""
        if not isinstance(u, dict):
            return
        if isinstance(u.get("input_tokens"), int):
            self.input = u["input_tokens"]
        if isinstance(u.get("cache_creation_input_tokens"), int):
            self.cache_write = u["cache_creation_input_tokens"]
        if isinstance(u.get("cache_read_input_tokens"), int):
            self.cache_read = u["cache_read_input_tokens"]
        if isinstance(u.get("output_tokens"), int):
            self.completion = u["output_tokens"]
        prompt = self.input + self.cache_write + self.cache_read
        self.usage = usage_dict(
            prompt, self.completion, prompt_tokens_details=_details(self.cache_read, self.cache_write)
        )

    def _content(self, text: Any) -> list[bytes]:
        if not isinstance(text, str) or not text:
            return []
        self.content_chunks += 1
        if self.endpoint == COMPLETIONS:
            return [self._text_completion([{"text": text, "index": 0, "logprobs": None, "finish_reason": None}])]
        return [self._chat({"content": text})]

    def _chat(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return orjson.dumps(chat_chunk(self.ctx, self.id, [choice]))

    def _text_completion(self, choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        out: dict[str, Any] = {
            "id": self.id,
            "object": "text_completion",
            "created": self.ctx.created,
            "model": self.ctx.client_model,
            "choices": choices,
        }
        if self.ctx.include_usage:
            out["usage"] = usage
        return orjson.dumps(out)


_EVENTS: dict[str, Callable[[AnthropicStream, dict[str, Any]], list[bytes]]] = {
    "message_start": AnthropicStream._message_start,
    "content_block_start": AnthropicStream._block_start,
    "content_block_delta": AnthropicStream._block_delta,
    "message_delta": AnthropicStream._message_delta,
    "message_stop": AnthropicStream._message_stop,
    "error": AnthropicStream._error,
    # content_block_stop and ping carry nothing to relay; unknown types are ignored, as the docs ask.
}


class AnthropicAdapter(Adapter):
    kind = "anthropic"
    capabilities = Capabilities(endpoints=frozenset({CHAT, COMPLETIONS}))

    def __init__(self, name: str, cfg: Any) -> None:
        super().__init__(name, cfg)
        base = (cfg.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.url = base.removesuffix("/v1") + "/v1/messages"  # base_url is the origin; tolerate a trailing /v1
        headers = {"content-type": "application/json", "accept": "application/json"}
        headers.update({k.lower(): v for k, v in cfg.headers.items()})
        headers["anthropic-version"] = cfg.api_version or DEFAULT_VERSION
        if cfg.api_key is not None and cfg.api_key.get_secret_value():
            headers["x-api-key"] = cfg.api_key.get_secret_value()
        self._headers = headers

    # Anthropic serves the Messages API itself: the client's body goes as sent.
    native_apis = frozenset({"messages"})

    def native_request(self, api: str, body: bytes, target: Target, client: Any) -> UpstreamRequest:
        if api not in self.native_apis:
            raise self.endpoint_unsupported(api)
        return UpstreamRequest(
            "POST", self.url, self.client_headers(client), body, bool(getattr(client, "stream", False))
        )

    def count_tokens_request(self, body: bytes, client: Any) -> UpstreamRequest:
        return UpstreamRequest("POST", self.url + "/count_tokens", self.client_headers(client), body)

    def client_headers(self, client: Any) -> dict[str, str]:
        """Our headers with the client's ``anthropic-version`` and ``anthropic-beta`` (betas and
        versions are the client's business; the key never is)."""
        headers = dict(self._headers)
        version, beta = getattr(client, "anthropic_version", None), getattr(client, "anthropic_beta", None)
        if version:
            headers["anthropic-version"] = version.decode("latin-1")
        if beta:
            headers["anthropic-beta"] = beta.decode("latin-1")
        return headers

    def build_request(self, endpoint: str, body: dict[str, Any], target: Target, ctx: CallContext) -> UpstreamRequest:
        if endpoint not in self.capabilities.endpoints:
            raise self.endpoint_unsupported(endpoint)
        table = CHAT_PARAMS if endpoint == CHAT else COMPLETION_PARAMS
        b = _Build(self, ctx, {"model": target.upstream_model, "max_tokens": _max_tokens(endpoint, body, target)})
        for name, value in body.items():
            if value is None:
                continue
            handler = table.get(name)
            if handler is None:
                raise self.unsupported(name, "it has no equivalent in Anthropic's Messages API")
            handler(b, name, value)
        if endpoint == CHAT:
            b.messages(body["messages"])
            b.tools(body)
        else:
            b.prompt(body.get("prompt"))
        b.response_format(body.get("response_format"))
        stream = b.out.get("stream") is True
        return UpstreamRequest("POST", self.url, dict(self._headers), orjson.dumps(b.out), stream)

    def parse_response(self, endpoint: str, payload: bytes, ctx: CallContext) -> dict[str, Any]:
        msg = load_json(payload, self)
        # Anthropic's shorter examples leave out "type"; anything else typed (an error) is not an answer.
        if (
            not isinstance(msg, dict)
            or msg.get("type", "message") != "message"
            or not isinstance(msg.get("content"), list)
        ):
            raise self.bad_response("not a Messages API message")
        json_tool = bool(ctx.extra.get("json_tool"))
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in msg["content"]:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif kind == "tool_use":
                args = orjson.dumps(block.get("input") or {}).decode()
                if json_tool and block.get("name") == JSON_TOOL:
                    texts.append(args)
                else:
                    fn = {"name": block.get("name"), "arguments": args}
                    calls.append({"id": block.get("id"), "type": "function", "function": fn})
            # thinking, redacted_thinking and server-tool blocks have no place in an OpenAI answer
        finish = _finish(msg.get("stop_reason"), json_tool)
        head = {"id": msg.get("id") or new_id("msg_"), "created": ctx.created, "model": ctx.client_model}
        # No usage from upstream: none to the client either, so the gateway records an estimate.
        tail = {"usage": _usage(msg["usage"])} if isinstance(msg.get("usage"), dict) else {}
        if endpoint == COMPLETIONS:
            choice = {"text": "".join(texts), "index": 0, "logprobs": None, "finish_reason": finish}
            return {**head, "object": "text_completion", "choices": [choice], **tail}
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(texts) if texts or not calls else None,
            "refusal": None,
        }
        if calls:
            message["tool_calls"] = calls
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        return {**head, "object": "chat.completion", "choices": [choice], **tail}

    def stream_translator(self, endpoint: str, ctx: CallContext) -> StreamTranslator:
        return AnthropicStream(self.name, endpoint, ctx)

    def parse_error(self, status: int, payload: bytes) -> GatewayError:
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            obj = None
        err = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(err, dict):
            kind = err.get("type") if isinstance(err.get("type"), str) else None
            message = str(err.get("message") or kind or f"HTTP {status}")
        else:
            kind = None
            message = payload[:200].decode("utf-8", "replace").strip() or f"HTTP {status}"
        if status == 529 or kind == "overloaded_error":
            status = 503  # 529 is Anthropic's own; OpenAI SDKs know 503 and retry it
        return self.upstream_error(status, message, kind, kind)
