"""What the dialect simulators make answers from: words counted and cut without copying the input,
and values sampled from JSON schemas, every size bounded (``openai_responses``, ``anthropic``).

Words are counted in fixed-size windows and only as many are read as are used; a sampled document
holds at most ``SAMPLE_NODES`` values, nested at most ``SAMPLE_DEPTH`` deep.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import orjson

from simulators.model import _WORD

STRING_FILL_WORDS = 64  # sampled string values: at most this many words of the last user text
SAMPLE_NODES = 10_000  # values one sampled JSON document may hold
SAMPLE_DEPTH = 32  # and how deep it nests ($ref cycles end here)
_WINDOW = 1 << 16  # characters counted at a time


# -- words, bounded ---------------------------------------------------------------------------
def count_words(text: str) -> int:
    """``len(text.split())`` without building the list of words: counted a window at a time."""
    if len(text) <= _WINDOW:
        return len(text.split())
    n, joined = 0, False
    for i in range(0, len(text), _WINDOW):
        chunk = text[i : i + _WINDOW]
        n += len(chunk.split())
        if joined and not chunk[0].isspace():
            n -= 1  # a word runs across the window boundary
        joined = not chunk[-1].isspace()
    return n


def head_text(texts: Iterable[str], words: int) -> str:
    """``" ".join(texts)`` cut after ``words`` words (the words past those are never read)."""
    out: list[str] = []
    left = words
    for text in texts:
        if left <= 0:
            break
        end = len(text)
        for m in _WORD.finditer(text):
            left -= 1
            if left == 0:
                end = m.end()
                break
        out.append(text[:end])
    return " ".join(out)


def json_words(values: Iterable[Any]) -> int:
    """The words of ``orjson.dumps(list(values))``, serializing one value at a time."""
    n = k = 0
    for v in values:
        n += count_words(orjson.dumps(v).decode())
        k += 1
    return n - (k - 1) if k else 0  # compact JSON joins neighbours with "," into one word


def mentions(name: str, texts: list[str]) -> tuple[int, int] | None:
    """Where ``name`` first appears as a word (not inside a longer identifier) in ``texts``."""
    if not name:
        return None
    pattern = re.compile(r"(?<![\w-])" + re.escape(name) + r"(?![\w-])")
    for i, text in enumerate(texts):
        m = pattern.search(text)
        if m:
            return i, m.start()
    return None


# -- JSON schema samples ----------------------------------------------------------------------
def sample_schema(schema: Any, fill: str) -> Any:
    """A value valid against a JSON schema: required properties (all of them when the schema lists
    none), ``const``/first ``enum`` value, first ``anyOf``/``oneOf`` branch, local ``$ref``s,
    numbers inside their bounds, strings ``fill`` (within min/maxLength). Size and depth are bounded."""
    budget = [SAMPLE_NODES]
    root = schema if isinstance(schema, dict) else {}

    def ref(path: str) -> Any:
        node: Any = root
        for key in path.removeprefix("#").strip("/").split("/") if path != "#" else []:
            node = node.get(key.replace("~1", "/").replace("~0", "~")) if isinstance(node, dict) else None
        return node

    def go(s: Any, depth: int) -> Any:
        budget[0] -= 1
        if not isinstance(s, dict) or depth > SAMPLE_DEPTH or budget[0] < 0:
            return None
        if isinstance(s.get("$ref"), str) and s["$ref"].startswith("#"):
            return go(ref(s["$ref"]), depth + 1)
        if "const" in s:
            return s["const"]
        if isinstance(s.get("enum"), list) and s["enum"]:
            return s["enum"][0]
        for key in ("anyOf", "oneOf", "allOf"):
            if isinstance(s.get(key), list) and s[key]:
                branch = next((b for b in s[key] if isinstance(b, dict) and b.get("type") != "null"), s[key][0])
                return go(branch, depth + 1)
        kind = s.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object" or (kind is None and isinstance(s.get("properties"), dict)):
            props = s.get("properties") if isinstance(s.get("properties"), dict) else {}
            required = s.get("required")
            names = required if isinstance(required, list) else list(props)
            return {n: go(props.get(n, {"type": "string"}), depth + 1) for n in names if isinstance(n, str)}
        if kind == "array":
            count = s.get("minItems") if isinstance(s.get("minItems"), int) else 1
            if isinstance(s.get("maxItems"), int):
                count = min(count, s["maxItems"])
            items = s.get("items") if isinstance(s.get("items"), dict) else {"type": "string"}
            return [go(items, depth + 1) for _ in range(max(0, min(count, budget[0])))]
        if kind in ("integer", "number"):
            return _number(s, kind == "integer")
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return _string(s, fill)

    return go(schema, 0)


def _number(s: dict[str, Any], integer: bool) -> int | float:
    lo = s.get("minimum")
    if lo is None and isinstance(s.get("exclusiveMinimum"), int | float):
        lo = s["exclusiveMinimum"] + (1 if integer else 0.5)
    hi = s.get("maximum")
    if hi is None and isinstance(s.get("exclusiveMaximum"), int | float):
        hi = s["exclusiveMaximum"] - (1 if integer else 0.5)
    v: float = 1 if integer else 1.5
    if isinstance(lo, int | float) and v < lo:
        v = lo
    if isinstance(hi, int | float) and v > hi:
        v = hi
    return math.ceil(v) if integer else float(v)


def _string(s: dict[str, Any], fill: str) -> str:
    value = {
        "date-time": "2025-01-01T00:00:00Z",
        "date": "2025-01-01",
        "time": "00:00:00Z",
        "email": "user@example.com",
        "uri": "https://example.com/",
        "uuid": "00000000-0000-4000-8000-000000000000",
    }.get(s.get("format"), fill or "sample")
    if isinstance(s.get("minLength"), int) and len(value) < s["minLength"]:
        value += "x" * min(s["minLength"] - len(value), 1 << 16)
    if isinstance(s.get("maxLength"), int):
        value = value[: max(s["maxLength"], 0)]
    return value
