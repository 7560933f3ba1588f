"""OpenAI chat and legacy completions bodies -> Anthropic Messages bodies: messages, tools, formats.

The table (params.py) writes the fields that map one to one; ``build_body`` adds the budget,
the turns, the tools and the response format, and records in ``AnthropicReply`` whether the
answer will come back through the forced JSON tool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.errors import GatewayError, invalid
from gateway.wire.types import CHAT, COMPLETIONS
from providers.anthropic import params
from providers.anthropic.content import (
    add_turn,
    assistant_blocks,
    collapse,
    data_url,
    image,
    part_text,
    text_blocks,
    tool_result,
)
from providers.base import apply_params, given

if TYPE_CHECKING:
    from providers.anthropic import AnthropicAdapter
    from providers.base import CallContext, Target

# Anthropic requires max_tokens. Without one from the request or the model's config, chat gets 4096
# (room for a long answer, within every current Claude model's output limit) and legacy completions
# keep OpenAI's documented default of 16, so answers are as long as on OpenAI.
DEFAULT_MAX_TOKENS = {CHAT: 4096, COMPLETIONS: 16}
# The forced tool that carries a json_object answer: Anthropic has no schemaless JSON mode, and its
# tool-use docs show this pattern for JSON output. Its input comes back as the message content.
JSON_TOOL = "json_answer"
_JSON_TOOL_DEF = {
    "name": JSON_TOOL,
    "description": "Give the complete answer as a JSON object.",
    "input_schema": {"type": "object"},
}


@dataclass(frozen=True, slots=True)
class AnthropicReply:
    """What the way back needs to know of the request (``CallContext.reply``)."""

    json_tool: bool = False  # the answer is the input of the forced JSON tool (response_format json_object)


PLAIN = AnthropicReply()
_JSON_REPLY = AnthropicReply(json_tool=True)


def build_body(
    adapter: AnthropicAdapter, endpoint: str, body: dict[str, Any], target: Target, ctx: CallContext
) -> dict[str, Any]:
    b = _Build(adapter, ctx, {"model": target.upstream_model, "max_tokens": _max_tokens(endpoint, body, target)})
    apply_params(adapter, params.CHAT if endpoint == CHAT else params.COMPLETIONS, body, b.out)
    b.temperature(body.get("temperature"))
    if endpoint == CHAT:
        b.messages(body["messages"])
        b.tools(body)
    else:
        b.prompt(body.get("prompt"))
    b.response_format(body.get("response_format"))
    return b.out


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
                system.extend(text_blocks(m.get("content"), where))
            elif role == "user":
                add_turn(turns, "user", self._user_blocks(m.get("content"), where))
            elif role == "assistant":
                add_turn(turns, "assistant", assistant_blocks(m, where))
            elif role == "tool":
                add_turn(turns, "user", [tool_result(m, where)])
            else:
                raise invalid(
                    f"Invalid value for '{where}.role': '{role}'. Supported values are: "
                    "'system', 'developer', 'user', 'assistant' and 'tool'.",
                    f"{where}.role",
                    "invalid_value",
                )
        if system:
            self.out["system"] = collapse(system)
        self.out["messages"] = [{"role": t["role"], "content": collapse(t["content"])} for t in turns]

    def _user_blocks(self, content: Any, where: str) -> list[dict[str, Any]]:
        if not isinstance(content, list):
            return text_blocks(content, where)
        blocks = []
        for j, part in enumerate(content):
            w = f"{where}.content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                if text := part_text(part, w):
                    blocks.append({"type": "text", "text": text})
            elif kind == "image_url":
                blocks.append(image(part.get("image_url"), w))
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
        media_type, payload = data_url(data) if isinstance(data, str) else ("", "")
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
            schema = rf.get("schema")  # the Fireworks-style completions form may carry one
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
        self.ctx.reply = _JSON_REPLY

    def temperature(self, value: Any) -> None:
        if not given(value):
            return
        if value > 1:
            raise GatewayError(
                400,
                f"Invalid 'temperature': provider '{self.adapter.name}' (anthropic) accepts 0 to 1, but got {value:g}.",
                param="temperature",
                code="invalid_value",
            )
        self.out["temperature"] = value

    # -- completions ---------------------------------------------------------------------------
    def prompt(self, prompt: Any) -> None:
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise self.adapter.unsupported(
                "prompt", "Anthropic takes one text prompt per request, not several prompts or token ids"
            )
        self.out["messages"] = [{"role": "user", "content": prompt}]


def _max_tokens(endpoint: str, body: dict[str, Any], target: Target) -> int:
    for param in ("max_completion_tokens", "max_tokens") if endpoint == CHAT else ("max_tokens",):
        value = body.get(param)
        if given(value):
            if value < 1:
                raise invalid(
                    f"Invalid '{param}': Anthropic needs at least 1, but got {value}.", param, "invalid_value"
                )
            return value
    return target.default_max_tokens or DEFAULT_MAX_TOKENS[endpoint]
