"""Checks of the request fields the gateway interprets, with OpenAI's wording and ``param``.

Only fields that are present are checked; everything else passes through untouched.
Ranges come from the seed API references (see ``../shared/seeds``).
"""

from __future__ import annotations

from typing import Any

from gateway.config import MAX_MODEL_NAME
from gateway.errors import GatewayError, missing
from providers.base import CHAT, COMPLETIONS, EMBEDDINGS

INT64_MAX = 2**63 - 1

_TYPE_NAMES = {
    int: "an integer",
    float: "a decimal",
    str: "a string",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
}


def _got(v: Any) -> str:
    """The JSON type of a parsed value, in OpenAI's words (parsed JSON holds exactly these types)."""
    return "null" if v is None else _TYPE_NAMES.get(type(v), "an unknown type")


def type_error(param: str, expected: str, v: Any) -> GatewayError:
    return _invalid(
        param, f"Invalid type for '{param}': expected {expected}, but got {_got(v)} instead.", "invalid_type"
    )


def _range_error(param: str, v: Any, lo: float | None, hi: float | None) -> GatewayError:
    kind = "integer" if isinstance(v, int) else "decimal"
    if lo is not None and v < lo:
        msg = f"Invalid '{param}': {kind} below minimum value. Expected a value >= {lo:g}, but got {v:g} instead."
    else:
        msg = f"Invalid '{param}': {kind} above maximum value. Expected a value <= {hi:g}, but got {v:g} instead."
    return _invalid(param, msg)


def _invalid(param: str, message: str, code: str = "invalid_value") -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def _number(body: dict[str, Any], param: str, lo: float | None, hi: float | None) -> None:
    v = body.get(param)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise type_error(param, "a decimal", v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise _range_error(param, v, lo, hi)


def integer(body: dict[str, Any], param: str, lo: int | None, hi: int | None) -> None:
    v = body.get(param)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer() and -INT64_MAX <= v <= INT64_MAX:
            body[param] = v = int(v)  # JSON clients sometimes send 16.0
        elif isinstance(v, float) and v.is_integer():
            # 1e308 is an integer no upstream (nor JSON encoder) takes: a range error, not a crash.
            raise _range_error(param, v, -INT64_MAX if lo is None else lo, INT64_MAX)
        else:
            raise type_error(param, "an integer", v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise _range_error(param, v, lo, hi)


def _boolean(body: dict[str, Any], param: str) -> None:
    v = body.get(param)
    if v is not None and not isinstance(v, bool):
        raise type_error(param, "a boolean", v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def model_of(body: dict[str, Any]) -> str | None:
    """The request's ``model`` when it is a string (None otherwise: the API's own check says why);
    400 when it is longer than any model name, before it reaches a log, a metric or Redis."""
    model = body.get("model")
    if not isinstance(model, str):
        return None
    if len(model) > MAX_MODEL_NAME:
        raise _invalid(
            "model",
            f"Invalid 'model': string too long. Expected a string with maximum length {MAX_MODEL_NAME}, "
            f"but got a string with length {len(model)} instead.",
            "string_above_max_length",
        )
    return model


def _common(body: dict[str, Any]) -> None:
    model = body.get("model")
    if model is None:
        raise _invalid("model", "you must provide a model parameter", "missing_required_parameter")
    if not isinstance(model, str):
        raise type_error("model", "a string", model)
    if not model:
        raise _invalid("model", "Invalid 'model': empty string.")
    _boolean(body, "stream")
    opts = body.get("stream_options")
    if opts is not None:
        if not isinstance(opts, dict):
            raise type_error("stream_options", "an object", opts)
        if body.get("stream") is not True:
            raise _invalid("stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
        iu = opts.get("include_usage")
        if iu is not None and not isinstance(iu, bool):
            raise type_error("stream_options.include_usage", "a boolean", iu)
    cleb = body.get("context_length_exceeded_behavior")
    if cleb is not None and cleb not in ("truncate", "error"):
        raise _invalid(
            "context_length_exceeded_behavior",
            f"Invalid value for 'context_length_exceeded_behavior': expected 'truncate' or 'error', got {cleb!r}.",
        )


def _generation(body: dict[str, Any]) -> None:
    integer(body, "max_tokens", 0, None)
    integer(body, "n", 1, 128)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    integer(body, "top_logprobs", 0, 20)
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str):
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise type_error("stop", "a string or an array of strings", stop)
        if len(stop) > 4:
            raise _invalid(
                "stop",
                f"Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length {len(stop)} instead.",
                "array_above_max_length",
            )


def check_chat(body: dict[str, Any]) -> None:
    _common(body)
    msgs = body.get("messages")
    if msgs is None:
        raise missing("messages")
    if not isinstance(msgs, list):
        raise type_error("messages", "an array", msgs)
    if not msgs:
        raise _invalid(
            "messages",
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "empty_array",
        )
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise type_error(f"messages[{i}]", "an object", m)
        role = m.get("role")
        if role is None:
            raise missing(f"messages[{i}].role")
        if not isinstance(role, str):
            raise type_error(f"messages[{i}].role", "a string", role)
    _generation(body)
    integer(body, "max_completion_tokens", 0, None)
    _boolean(body, "logprobs")
    if body.get("top_logprobs") is not None and body.get("logprobs") is not True:
        raise _invalid(
            "top_logprobs",
            "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.",
        )


def _prompt_ok(p: Any) -> bool:
    if isinstance(p, str):
        return True
    if isinstance(p, list) and p:
        if all(isinstance(x, str) for x in p):
            return True
        if all(_is_int(x) for x in p):
            return True
        return all(isinstance(x, list) and x and all(_is_int(t) for t in x) for x in p)
    return False


def check_completions(body: dict[str, Any]) -> None:
    _common(body)
    if "prompt" not in body or body["prompt"] is None:
        raise missing("prompt")
    if not _prompt_ok(body["prompt"]):
        raise type_error(
            "prompt",
            "a string, an array of strings, an array of integers or an array of integer arrays",
            body["prompt"],
        )
    _generation(body)
    integer(body, "logprobs", 0, 5)
    integer(body, "best_of", 0, 20)
    _boolean(body, "echo")
    best_of, n = body.get("best_of"), body.get("n") or 1
    if best_of is not None:
        if best_of < n:
            raise _invalid("best_of", f"best_of must be greater than or equal to n (got best_of={best_of}, n={n}).")
        if best_of > 1 and body.get("stream") is True:
            raise _invalid("best_of", "best_of results cannot be streamed; use best_of=1 with stream.")
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise type_error("suffix", "a string", suffix)


def check_embeddings(body: dict[str, Any]) -> None:
    _common(body)
    inp = body.get("input")
    if inp is None:
        raise missing("input")
    if isinstance(inp, str):
        if not inp:
            raise _invalid("input", "'input' cannot be an empty string.")
    elif isinstance(inp, list):
        if not inp:
            raise _invalid("input", "'input' cannot be an empty array.")
        if len(inp) > 2048:
            raise _invalid("input", "'input' must have at most 2048 items.", "array_above_max_length")
        ok = (
            all(isinstance(x, str) and x for x in inp)
            or all(_is_int(x) for x in inp)
            or all(isinstance(x, list) and x and all(_is_int(t) for t in x) for x in inp)
        )
        if not ok:
            raise type_error(
                "input", "a non-empty string, array of strings, array of integers or array of integer arrays", inp
            )
    else:
        raise type_error("input", "a string or an array", inp)
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise _invalid(
            "encoding_format", f"Invalid value for 'encoding_format': expected 'float' or 'base64', got {fmt!r}."
        )
    integer(body, "dimensions", 1, None)


CHECKS = {CHAT: check_chat, COMPLETIONS: check_completions, EMBEDDINGS: check_embeddings}
