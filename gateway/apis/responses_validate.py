"""Checks of the Responses API request (``POST /v1/responses``): the fields the gateway interprets, in
OpenAI's wording and ``param`` (the SDK's request types are the oracle); also the error helpers
``responses_translate`` words its refusals with.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError, missing
from gateway.pipeline.validate import type_error

_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")  # "max": the SDK's ReasoningEffort has it
_SUMMARIES = ("auto", "concise", "detailed")
_FORMATS = ("text", "json_object", "json_schema")
_TOOL_CHOICES = ("none", "auto", "required")


def bad(param: str, message: str, code: str = "invalid_value") -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def required(param: str, expected: str, v: Any) -> GatewayError:
    """The error for a required field that is absent or not ``expected``."""
    return missing(param) if v is None else type_error(param, expected, v)


def enum_error(param: str, v: Any, allowed: tuple[str, ...]) -> GatewayError:
    quoted = [f"'{a}'" for a in allowed]
    listed = ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 2 else " and ".join(quoted)
    return bad(param, f"Invalid value: {v!r}. Supported values are: {listed}.")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(body: dict, param: str, lo: float, hi: float) -> None:
    v = body.get(param)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise type_error(param, "a number", v)
    if not lo <= v <= hi:
        side, bound = ("below minimum", f">= {lo:g}") if v < lo else ("above maximum", f"<= {hi:g}")
        kind = "integer" if _is_int(v) else "decimal"
        raise bad(param, f"Invalid '{param}': {kind} {side} value. Expected a value {bound}, but got {v:g} instead.")


def _optional(body: dict, param: str, kind: type, expected: str, prefix: str = "") -> Any:
    v = body.get(param)
    if v is not None and (not isinstance(v, kind) or (kind is int and isinstance(v, bool))):
        raise type_error(prefix + param, expected, v)
    return v


def validate(body: dict) -> None:
    """Raises ``GatewayError(400)`` in OpenAI's wording for the first bad field the gateway interprets."""
    if body.get("model") is None:
        raise missing("model")
    _optional(body, "model", str, "a string")
    inp = body.get("input")
    if inp is None:
        if body.get("previous_response_id") is None:
            raise missing("input")
    elif isinstance(inp, list):
        for i, item in enumerate(inp):
            if not isinstance(item, dict):
                raise type_error(f"input[{i}]", "an object", item)
    elif not isinstance(inp, str):
        raise type_error("input", "a string or an array of input items", inp)
    for param in ("instructions", "previous_response_id", "user", "safety_identifier"):
        _optional(body, param, str, "a string")
    for param in ("stream", "store", "parallel_tool_calls", "background"):
        _optional(body, param, bool, "a boolean")
    tools = _optional(body, "tools", list, "an array")
    for i, tool in enumerate(tools or ()):
        if not isinstance(tool, dict):
            raise type_error(f"tools[{i}]", "an object", tool)
        if tool.get("type") is None:
            raise missing(f"tools[{i}].type")
        _optional(tool, "type", str, "a string", f"tools[{i}].")
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise enum_error("tool_choice", choice, _TOOL_CHOICES)
    elif choice is not None:
        if not isinstance(choice, dict):
            raise type_error("tool_choice", "a string or an object", choice)
        if not isinstance(choice.get("type"), str):
            raise required("tool_choice.type", "a string", choice.get("type"))
    mot = _optional(body, "max_output_tokens", int, "an integer")
    if mot is not None and mot < 16:
        raise bad(
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
            raise type_error(f"include[{i}]", "a string", v)


def _validate_text(body: dict) -> None:
    text = _optional(body, "text", dict, "an object")
    fmt = _optional(text or {}, "format", dict, "an object", "text.")
    if fmt is None:
        return
    kind = fmt.get("type")
    if kind is None:
        raise missing("text.format.type")
    if kind not in _FORMATS:
        raise enum_error("text.format.type", kind, _FORMATS)
    if kind == "json_schema":
        if fmt.get("name") is None:
            raise missing("text.format.name")
        _optional(fmt, "name", str, "a string", "text.format.")
        if fmt.get("schema") is None:
            raise missing("text.format.schema")
        _optional(fmt, "schema", dict, "an object", "text.format.")
        _optional(fmt, "strict", bool, "a boolean", "text.format.")


def _validate_reasoning(body: dict) -> None:
    reasoning = _optional(body, "reasoning", dict, "an object")
    if reasoning is None:
        return
    effort = reasoning.get("effort")
    if effort is not None and effort not in _EFFORTS:
        raise enum_error("reasoning.effort", effort, _EFFORTS)
    for key in ("summary", "generate_summary"):
        v = reasoning.get(key)
        if v is not None and v not in _SUMMARIES:
            raise enum_error(f"reasoning.{key}", v, _SUMMARIES)


def _validate_metadata(body: dict) -> None:
    meta = _optional(body, "metadata", dict, "an object")
    if meta is None:
        return
    if len(meta) > 16:
        raise bad(
            "metadata",
            "Invalid 'metadata': too many properties. Expected an object with at most 16 properties, "
            f"but got an object with {len(meta)} properties instead.",
        )
    for k, v in meta.items():
        if len(k) > 64:
            raise bad("metadata", f"Invalid 'metadata': key {k[:20]!r}... is longer than 64 characters.")
        if not isinstance(v, str):
            raise type_error(f"metadata.{k}", "a string", v)
        if len(v) > 512:
            raise bad(f"metadata.{k}", f"Invalid 'metadata.{k}': string too long. Expected at most 512 characters.")
