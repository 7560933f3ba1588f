"""How the simulated models play along with tools and structured output, deterministically.

Agent frameworks offer tools and ask for JSON; a mock that ignored both would fail their default
modes. The rules, shared by the in-process mock model (``simulators/model.py``) and the simulated
upstreams that can use them:

- a tool is called when ``tool_choice`` names it, when a call is required (then the tool the last
  user message names, else the first), or when the last user message names a tool (its name, in any
  case, underscores and hyphens also matching spaces: ``get_weather`` or "get weather");
- never right after a tool result: the model then answers in text;
- the call's arguments, and a JSON answer for ``json_schema``, are a value that satisfies the JSON
  Schema given (required and optional properties, types, enums and consts, numeric and length
  bounds, formats, ``anyOf``/``oneOf``/``allOf``, ``$ref`` into ``$defs``), built from the last user
  text, so the same request always gets the same answer.

Nothing here knows a dialect's wire shape; each simulator maps its tools, choice and answer.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

try:  # the regular-expression parser, to write a string a ``pattern`` accepts
    import re._parser as _sre  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_parse as _sre  # type: ignore[no-redef]

# Sample values for string formats; each is valid for its format.
FORMATS = {
    "date-time": "2026-01-01T12:00:00Z",
    "date": "2026-01-01",
    "time": "12:00:00Z",
    "duration": "P1D",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "regex": ".*",
    "json-pointer": "/a",
}
MAX_DEPTH = 12  # recursive schemas stop here (null, empty arrays, objects with only what is required)
DEFAULT_TEXT = "mock"


@dataclass(frozen=True)
class Tool:
    """A function tool as the simulators see it, whatever the dialect: its name and JSON Schema."""

    name: str
    schema: dict[str, Any]


def named_tool(tools: list[Tool], text: str) -> Tool | None:
    """The tool the text names (the earliest mention wins), if any."""
    best: tuple[int, Tool] | None = None
    for tool in tools:
        if not tool.name:
            continue
        forms = {tool.name, re.sub(r"[_-]+", " ", tool.name)}
        for form in forms:
            m = re.search(rf"(?<![A-Za-z0-9_]){re.escape(form)}(?![A-Za-z0-9_])", text, re.IGNORECASE)
            if m and (best is None or m.start() < best[0]):
                best = (m.start(), tool)
    return best[1] if best else None


def choose_tool(
    tools: list[Tool], text: str, *, forced: str | None = None, required: bool = False, eager: bool = False
) -> Tool | None:
    """The tool to call: the forced one, else the one the text names, else the first when a call is
    required (or the simulator calls eagerly); None to answer in text."""
    if not tools:
        return None
    if forced is not None:
        return next((t for t in tools if t.name == forced), None)
    named = named_tool(tools, text)
    if named is not None:
        return named
    return tools[0] if required or eager else None


def call_id(prefix: str, name: str, text: str) -> str:
    """A tool call id that is the same for the same call."""
    return prefix + hashlib.sha1(f"{name}\0{text}".encode()).hexdigest()[:24]


def arguments(tool: Tool, text: str) -> dict[str, Any]:
    """The call's arguments: an object that satisfies the tool's schema."""
    schema = tool.schema if isinstance(tool.schema, dict) and tool.schema else {"type": "object"}
    value = instance(schema, text)
    return value if isinstance(value, dict) else {}


def dumps(value: Any) -> str:
    """JSON with spaces after separators, so the mock's whitespace tokens split it into pieces."""
    return json.dumps(value, ensure_ascii=False)


def json_text(schema: dict[str, Any] | None, text: str) -> str:
    """A JSON answer: an instance of ``schema``, or an object holding the text when there is none."""
    if isinstance(schema, dict) and schema:
        return dumps(instance(schema, text))
    return dumps({"text": text})


def instance(schema: Any, text: str = DEFAULT_TEXT, *, root: Any = None, depth: int = 0, variant: int = 0) -> Any:
    """A value valid under the JSON Schema ``schema`` (Gemini's upper-case types accepted too).

    ``variant`` makes sibling array items differ (for ``uniqueItems``).
    """
    root = schema if root is None else root
    if not isinstance(schema, dict):
        return text or DEFAULT_TEXT  # ``true`` or a missing schema allows anything
    if "$ref" in schema:
        target = _resolve(root, schema["$ref"])
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return instance({**(target or {}), **rest}, text, root=root, depth=depth + 1, variant=variant)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][variant % len(schema["enum"])]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            rest = {k: v for k, v in schema.items() if k != key}
            # The first branch that is not null; past the depth limit, null if it is allowed.
            nonnull = [b for b in branches if not _is_null(b)]
            if depth >= MAX_DEPTH and len(nonnull) < len(branches):
                return None
            branch = nonnull[0] if nonnull else branches[0]
            return instance(_merge(rest, branch), text, root=root, depth=depth + 1, variant=variant)
    if isinstance(schema.get("allOf"), list):
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, dict) and "$ref" in part:
                part = _resolve(root, part["$ref"]) or {}
            merged = _merge(merged, part)
        return instance(merged, text, root=root, depth=depth + 1, variant=variant)
    kind = _type_of(schema, depth)
    if kind == "null":
        return None
    if kind == "boolean":
        return variant % 2 == 0
    if kind == "integer":
        return _number(schema, True, variant)
    if kind == "number":
        return _number(schema, False, variant)
    if kind == "array":
        return _array(schema, text, root, depth, variant)
    if kind == "object":
        return _object(schema, text, root, depth)
    return _string(schema, text, variant)


def _type_of(schema: dict[str, Any], depth: int) -> str:
    t = schema.get("type")
    if isinstance(t, list):
        types = [str(x).lower() for x in t]
        nonnull = [x for x in types if x != "null"]
        if depth >= MAX_DEPTH and "null" in types:
            return "null"
        t = nonnull[0] if nonnull else "null"
    if isinstance(t, str):
        t = t.lower()
        if depth >= MAX_DEPTH and schema.get("nullable") is True:
            return "null"
        return t
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return "number"
    return "string"


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and str(schema.get("type", "")).lower() == "null"


def _resolve(root: Any, ref: Any) -> dict[str, Any] | None:
    """A local ``#/...`` reference (``#/$defs/X``, ``#/definitions/X``, ``#``)."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    node = root
    for part in (p for p in ref[1:].split("/") if p):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


def _merge(a: dict[str, Any], b: Any) -> dict[str, Any]:
    """Two schemas that must both hold, merged for generation (properties and required united)."""
    if not isinstance(b, dict):
        return a
    out = {**b, **a}
    if "properties" in a or "properties" in b:
        out["properties"] = {**(b.get("properties") or {}), **(a.get("properties") or {})}
    if "required" in a or "required" in b:
        out["required"] = list(dict.fromkeys([*(b.get("required") or []), *(a.get("required") or [])]))
    for key in ("minimum", "minLength", "minItems", "exclusiveMinimum"):
        if key in a and key in b and isinstance(a[key], int | float) and isinstance(b[key], int | float):
            out[key] = max(a[key], b[key])
    for key in ("maximum", "maxLength", "maxItems", "exclusiveMaximum"):
        if key in a and key in b and isinstance(a[key], int | float) and isinstance(b[key], int | float):
            out[key] = min(a[key], b[key])
    return out


def _string(schema: dict[str, Any], text: str, variant: int) -> str:
    fmt = schema.get("format")
    value = FORMATS.get(fmt) if isinstance(fmt, str) else None
    if value is None:
        value = text or DEFAULT_TEXT
        if variant:
            value = f"{value} {variant + 1}"
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and not _matches(pattern, value):
        made = _from_pattern(pattern)
        value = made if made is not None and _matches(pattern, made) else value
    lo = schema.get("minLength")
    hi = schema.get("maxLength")
    if isinstance(lo, int) and len(value) < lo:
        value += "x" * (lo - len(value))
    if isinstance(hi, int) and len(value) > hi:
        value = value[:hi]
    return value


def _from_pattern(pattern: str) -> str | None:
    """The shortest simple string the regular expression matches (first branches, fewest repeats)."""
    try:
        parsed = _sre.parse(pattern)
    except (re.error, RecursionError):
        return None
    groups: dict[int, str] = {}

    def walk(items: Any) -> str:
        out = []
        for op, arg in items:
            name = str(op)
            if name == "LITERAL":
                out.append(chr(arg))
            elif name in ("ANY", "NOT_LITERAL"):
                out.append(next(c for c in "a0-" if name == "ANY" or ord(c) != arg))
            elif name == "IN":
                out.append(_class_char(arg))
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                lo, _hi, sub = arg
                out.append(walk(sub) * lo)
            elif name == "SUBPATTERN":
                text = walk(arg[-1])
                if arg[0] is not None:
                    groups[arg[0]] = text
                out.append(text)
            elif name == "ATOMIC_GROUP":
                out.append(walk(arg))
            elif name == "BRANCH":
                out.append(walk(arg[1][0]))
            elif name == "GROUPREF":
                out.append(groups.get(arg, ""))
            # AT (anchors), ASSERT and ASSERT_NOT add no characters
        return "".join(out)

    try:
        return walk(parsed)
    except (StopIteration, ValueError, TypeError, IndexError):
        return None


def _class_char(items: Any) -> str:
    """A character inside a ``[...]`` class (or a category such as ``\\d``)."""
    negate = any(str(op) == "NEGATE" for op, _ in items)
    for c in "aA0-_ .xz9Z":
        inside = any(_in_item(str(op), arg, c) for op, arg in items)
        if inside != negate:
            return c
    if not negate:
        op, arg = items[0]
        if str(op) == "LITERAL":
            return chr(arg)
        if str(op) == "RANGE":
            return chr(arg[0])
    raise ValueError("no simple character in this class")


def _in_item(name: str, arg: Any, c: str) -> bool:
    if name == "LITERAL":
        return ord(c) == arg
    if name == "RANGE":
        return arg[0] <= ord(c) <= arg[1]
    if name == "CATEGORY":
        return re.fullmatch(_CATEGORIES.get(str(arg), "(?!)"), c) is not None
    return False


_CATEGORIES = {
    "CATEGORY_DIGIT": r"\d",
    "CATEGORY_NOT_DIGIT": r"\D",
    "CATEGORY_WORD": r"\w",
    "CATEGORY_NOT_WORD": r"\W",
    "CATEGORY_SPACE": r"\s",
    "CATEGORY_NOT_SPACE": r"\S",
}


def _matches(pattern: str, value: str) -> bool:
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return True  # a pattern Python cannot read: nothing better to try


def _number(schema: dict[str, Any], integer: bool, variant: int) -> int | float:
    lo, lo_open = _bound(schema, "minimum", "exclusiveMinimum", max)
    hi, hi_open = _bound(schema, "maximum", "exclusiveMaximum", min)
    step = schema.get("multipleOf") if isinstance(schema.get("multipleOf"), int | float) else None
    if integer:
        low = None if lo is None else (math.floor(lo) + 1 if lo_open or lo != math.floor(lo) else int(lo))
        high = None if hi is None else (math.ceil(hi) - 1 if hi_open or hi != math.ceil(hi) else int(hi))
        value: int | float = 1 + variant
        if low is not None and value < low:
            value = low + variant
        if high is not None and value > high:
            value = high if low is None else max(low, high - variant)
        if step and step > 0:
            value = math.ceil(value / step) * step
            if high is not None and value > high:
                value = math.floor(high / step) * step
            value = int(value) if float(value).is_integer() else value
        return value
    value = 1.5 + variant
    if step and step > 0:
        value = float(1 + variant) * step
    if lo is not None and (value < lo or (lo_open and value <= lo)):
        value = lo + (step or 1) * (1 + variant) if hi is None else (lo + hi) / 2
    if hi is not None and (value > hi or (hi_open and value >= hi)):
        value = hi - (step or 1) if lo is None else (lo + hi) / 2
    if step and step > 0:
        value = round(value / step) * step
    return value


def _bound(schema: dict[str, Any], inclusive: str, exclusive: str, pick: Any) -> tuple[float | None, bool]:
    """A numeric bound and whether it is exclusive (draft 4's boolean form and the numeric one)."""
    inc = schema.get(inclusive) if isinstance(schema.get(inclusive), int | float) else None
    exc = schema.get(exclusive)
    if exc is True:
        return inc, inc is not None
    numeric = isinstance(exc, int | float) and not isinstance(exc, bool)
    if numeric and (inc is None or pick(inc, exc) == exc):
        return exc, True
    return inc, False


def _array(schema: dict[str, Any], text: str, root: Any, depth: int, variant: int) -> list[Any]:
    prefix = schema.get("prefixItems") if isinstance(schema.get("prefixItems"), list) else []
    items = schema.get("items")
    if isinstance(items, list):  # draft 4 tuple form
        prefix, items = items, schema.get("additionalItems", {})
    lo = schema.get("minItems") if isinstance(schema.get("minItems"), int) else 0
    hi = schema.get("maxItems") if isinstance(schema.get("maxItems"), int) else None
    count = max(lo, len(prefix), 1 if depth < MAX_DEPTH else 0)
    if hi is not None:
        count = min(count, hi)
    out = []
    for i in range(count):
        sub = prefix[i] if i < len(prefix) else items
        out.append(instance(sub, text, root=root, depth=depth + 1, variant=variant + i))
    return out


def _object(schema: dict[str, Any], text: str, root: Any, depth: int) -> dict[str, Any]:
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = [r for r in schema.get("required") or [] if isinstance(r, str)]
    out: dict[str, Any] = {}
    for name, sub in props.items():
        if depth >= MAX_DEPTH and name not in required:
            continue
        out[name] = instance(sub, text, root=root, depth=depth + 1)
    for name in required:  # required but not described: any value will do
        out.setdefault(name, text or DEFAULT_TEXT)
    lo = schema.get("minProperties")
    extra = schema.get("additionalProperties")
    k = 0
    while isinstance(lo, int) and len(out) < lo and extra is not False:
        k += 1
        out.setdefault(
            f"field_{k}", instance(extra if isinstance(extra, dict) else {}, text, root=root, depth=depth + 1)
        )
    return out


# -- the OpenAI chat dialect ---------------------------------------------------------------------


def chat_tools(body: dict[str, Any]) -> list[Tool]:
    out = []
    for t in body.get("tools") or []:
        fn = t.get("function") if isinstance(t, dict) and t.get("type", "function") == "function" else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            out.append(Tool(fn["name"], fn.get("parameters") if isinstance(fn.get("parameters"), dict) else {}))
    return out


def chat_tool_to_call(body: dict[str, Any], last_user: str) -> Tool | None:
    """The tool a chat request's answer calls, or None: see the module's rules."""
    messages = body.get("messages") or []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    if last.get("role") in ("tool", "function"):
        return None  # after a tool result, text
    choice = body.get("tool_choice")
    if choice == "none":
        return None
    forced = None
    if isinstance(choice, dict):
        fn = choice.get("function") if isinstance(choice.get("function"), dict) else choice
        forced = fn.get("name") if isinstance(fn.get("name"), str) else None
        allowed = choice.get("allowed_tools")  # {"type": "allowed_tools", "allowed_tools": {"mode", "tools"}}
        if isinstance(allowed, dict):
            names = {(t.get("function") or t).get("name") for t in allowed.get("tools") or [] if isinstance(t, dict)}
            tools = [t for t in chat_tools(body) if t.name in names]
            return choose_tool(tools, last_user, required=allowed.get("mode") == "required")
    text = last_user if last.get("role") == "user" or forced or choice == "required" else ""
    return choose_tool(chat_tools(body), text, forced=forced, required=choice == "required")


def chat_json_schema(body: dict[str, Any]) -> tuple[bool, dict[str, Any] | None]:
    """Whether a chat request asks for JSON, and the schema the answer must satisfy (if given)."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return False, None
    if fmt.get("type") == "json_schema":
        js = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else {}
        return True, js.get("schema") if isinstance(js.get("schema"), dict) else None
    if fmt.get("type") == "json_object":
        return True, fmt.get("schema") if isinstance(fmt.get("schema"), dict) else None  # Fireworks' form
    return False, None
