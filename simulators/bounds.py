"""What the simulated model will build, at most, and its refusal when a request asks for more.

Every size the simulator produces comes from the request (``dimensions``, ``n``, the echoed
prompt, logprobs), so each is bounded here, once for the in-process mock provider and for
``mock-upstream``: a request beyond a bound is a 400 in OpenAI's shape, as a real upstream's
refusal would be, never an answer of any size. Answers that are allowed but large are built
off the event loop by the in-process transport (``heavy``).
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_DIMENSIONS = 8192  # OpenAI's largest embedding model has 3072
MAX_EMBEDDING_VALUES = 1 << 20  # inputs x dimensions in one answer (about 22 MB of JSON)
MAX_N = 128  # choices per request (the gateway's own bound on ``n``)
MAX_OUTPUT_TOKENS = 1 << 15  # word pieces over all choices of one answer
MAX_OUTPUT_CHARS = 1 << 20  # characters over all choices of one answer
MAX_TOP_LOGPROBS = 20
HEAVY_WORK = 1 << 16  # an answer estimated above this many values or bytes is built in a thread


class MockError(Exception):
    """A request the simulated model refuses, as OpenAI would: status, message, param."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str = "invalid_value"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def to_bytes(self) -> bytes:
        err = {"message": self.message, "type": "invalid_request_error", "param": self.param, "code": self.code}
        return orjson.dumps({"error": err})


def integer(body: dict[str, Any], name: str, default: int | None, lo: int, hi: int | None) -> int | None:
    """``body[name]`` as an int within ``lo..hi`` (``default`` when absent or null), else MockError."""
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**63:
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise MockError(f"Invalid type for '{name}': expected an integer.", name, code="invalid_type")
    if v < lo or (hi is not None and v > hi):
        shown = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise MockError(f"Invalid '{name}': expected {shown}, got {v}. (mock model bound)", name)
    return v


def check_embedding(items: int, dims: Any) -> int:
    """The dimensions of an embeddings answer of ``items`` vectors, within the bounds."""
    if isinstance(dims, bool) or not isinstance(dims, int):
        raise MockError("Invalid type for 'dimensions': expected an integer.", "dimensions", code="invalid_type")
    if not 1 <= dims <= MAX_DIMENSIONS:
        raise MockError(
            f"Invalid 'dimensions': the mock model embeds in 1..{MAX_DIMENSIONS} dimensions, not {dims}.", "dimensions"
        )
    if items * dims > MAX_EMBEDDING_VALUES:
        raise MockError(
            f"The mock model returns at most {MAX_EMBEDDING_VALUES} values per request "
            f"({items} inputs x {dims} dimensions asked).",
            "input",
        )
    return dims


def heavy(endpoint: str, body: dict[str, Any], body_bytes: int) -> bool:
    """Whether building this answer is worth a thread: the echo grows with the prompt times ``n``,
    embeddings with inputs times dimensions (estimates; the bounds above are enforced anyway)."""
    n = body.get("n")
    copies = n if isinstance(n, int) and n > 1 else 1
    if body_bytes * copies > HEAVY_WORK:
        return True
    dims = body.get("dimensions")
    if isinstance(dims, int) and dims > 0:
        inp = body.get("input")
        items = len(inp) if isinstance(inp, list) and inp and not isinstance(inp[0], int) else 1
        return items * dims > HEAVY_WORK
    return False
