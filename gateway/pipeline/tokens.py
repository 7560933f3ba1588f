"""Offline token counting.

OpenAI's ``cl100k_base`` and ``o200k_base`` encodings ship in ``gateway/data/`` (tiktoken's own MIT
BPE files, checked against the sha256 tiktoken pins) and are loaded lazily, once per process, by
building ``tiktoken.Encoding`` ourselves: tiktoken is never asked to fetch anything and no
process-wide setting (``TIKTOKEN_CACHE_DIR``) is touched. Operators may name another tokenizer
per model: a tiktoken ``.tiktoken``/``.model`` file or an HF ``tokenizer.json``.

Chat prompts are counted the way OpenAI bills them (numbers from the OpenAI cookbook "How to count
tokens with tiktoken", https://cookbook.openai.com/examples/how_to_count_tokens_with_tiktoken).
For models whose tokenizer we do not have (Anthropic, Gemini, Cohere, ...) there are two
documented estimates: an upper one used only to truncate, and a lower one that is the only
ground for refusing a request locally.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
import tiktoken  # importing tiktoken loads no encoding

from providers.registry import capabilities


class Encoder(Protocol):
    """What counting needs: ``tiktoken.Encoding`` or the HF adapter below."""

    name: str

    def encode_ordinary(self, text: str) -> list[int]: ...


class TokenizerError(ValueError):
    """A tokenizer that cannot be loaded: unknown name, unreadable or corrupt file."""


_DATA_DIR = Path(__file__).parent.parent / "data"

# Split patterns and special tokens exactly as tiktoken_ext/openai_public.py defines them
# (tests/test_tokens.py checks they stay equal).
_CL100K_PAT = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


@dataclass(frozen=True, slots=True)
class _Builtin:
    sha256: str  # tiktoken_ext/openai_public.py ``expected_hash``
    pat_str: str
    special_tokens: dict[str, int]


_BUILTINS = {
    "cl100k_base": _Builtin(
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        _CL100K_PAT,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": _Builtin(
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _O200K_PAT,
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
}

_CACHE: dict[str, Encoder] = {}
_LOCK = threading.Lock()


def encoding(name_or_path: str) -> Encoder:
    """The encoder for ``cl100k_base``, ``o200k_base`` or a tokenizer file; built once per process.

    Loading takes a few hundred milliseconds (call it off the event loop the first time);
    a relative path is taken from the working directory. Raises ``TokenizerError``.
    """
    enc = _CACHE.get(name_or_path)
    if enc is None:
        with _LOCK:  # two threads must not both build a 200k-entry table
            enc = _CACHE.get(name_or_path)
            if enc is None:
                enc = _CACHE[name_or_path] = _load(name_or_path)
    return enc


def is_loaded(name_or_path: str) -> bool:
    return name_or_path in _CACHE


def _load(spec: str) -> Encoder:
    builtin = _BUILTINS.get(spec)
    if builtin is not None:
        ranks = _read_ranks(_DATA_DIR / f"{spec}.tiktoken", builtin.sha256)
        return tiktoken.Encoding(
            spec, pat_str=builtin.pat_str, mergeable_ranks=ranks, special_tokens=builtin.special_tokens
        )
    path = Path(spec).expanduser()
    if path.suffix in (".tiktoken", ".model"):
        # A tiktoken-format file carries no split pattern; cl100k's is the one Llama 3 and
        # most tiktoken-based vocabularies use.
        return tiktoken.Encoding(
            path.name, pat_str=_CL100K_PAT, mergeable_ranks=_read_ranks(path, None), special_tokens={}
        )
    if path.suffix == ".json":
        return _HFEncoding(path)
    raise TokenizerError(
        f"unknown tokenizer {spec!r}: use cl100k_base, o200k_base, a .tiktoken/.model file or an HF tokenizer.json"
    )


def _read_ranks(path: Path, sha256: str | None) -> dict[bytes, int]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TokenizerError(f"{path}: cannot read tokenizer file: {e.strerror}") from e
    if sha256 is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != sha256:
            raise TokenizerError(
                f"{path}: sha256 {got} does not match tiktoken's pinned {sha256}; "
                "the packaged tokenizer file is corrupt or was replaced, reinstall switchyard"
            )
    return _parse_ranks(data, path)


def _parse_ranks(data: bytes, path: Path) -> dict[bytes, int]:
    """tiktoken's BPE format: one ``<base64 token> <rank>`` per line."""
    ranks: dict[bytes, int] = {}
    try:
        for line in data.splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
    except ValueError as e:  # binascii.Error is a ValueError too
        raise TokenizerError(
            f"{path}: not a tiktoken BPE file (lines of '<base64 token> <rank>'); "
            "for a SentencePiece model give its HF tokenizer.json instead"
        ) from e
    if not ranks:
        raise TokenizerError(f"{path}: empty tokenizer file")
    return ranks


class _HFEncoding:
    """An HF ``tokenizer.json`` behind the ``encode_ordinary`` interface (needs ``tokenizers``)."""

    __slots__ = ("_tok", "name")

    def __init__(self, path: Path) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as e:
            raise TokenizerError(f"{path}: an HF tokenizer.json needs the 'tokenizers' package") from e
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises plain Exception for unreadable or malformed files
            raise TokenizerError(f"{path}: cannot load HF tokenizer: {e}") from e
        self.name = str(path)

    def encode_ordinary(self, text: str) -> list[int]:
        # Like tiktoken's encode_ordinary: no BOS/EOS added, special-token text counted as text.
        return self._tok.encode(text, add_special_tokens=False).ids


# OpenAI model names -> encoding (tiktoken/model.py's table, Azure's "gpt-35" spelling added).
# Longer prefixes first: "gpt-4o" must not fall into "gpt-4".
_MODEL_PREFIXES = (
    (("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4"), "o200k_base"),
    (("gpt-4", "gpt-3.5", "gpt-35", "text-embedding-", "davinci-002", "babbage-002"), "cl100k_base"),
)


def tokenizer_for(upstream_model: str, kind: str, configured: str | None) -> str | None:
    """The exact tokenizer for a deployment, or None when only estimates are possible.

    A configured tokenizer wins; OpenAI model names served by a kind whose ``Capabilities`` say
    ``openai_tokenizers`` (OpenAI, Azure) map to their encoding (the part after the last ``/``
    is matched, so ``openai/gpt-4o`` works too); everything else is None.
    """
    if configured:
        return configured
    if not capabilities(kind).openai_tokenizers:
        return None
    name = upstream_model.rsplit("/", 1)[-1].lower()
    for prefixes, enc in _MODEL_PREFIXES:
        if name.startswith(prefixes):
            return enc
    return None


# Long texts' counts are remembered: agents send the whole conversation every turn, so all but
# the newest messages were counted in the request before (a 100k-token history costs ~30 ms to
# count, its hash ~0.2 ms). Keyed by the encoder, the length and Python's hash of the text (keyed
# per process, so not a collision anyone can aim for); a few thousand entries, oldest out first.
_REMEMBER_CHARS = 4096
_REMEMBERED_MAX = 4096
_remembered: dict[tuple[int, int, int], tuple[Encoder, int]] = {}
_REMEMBER_LOCK = threading.Lock()  # counts run in worker threads too


def count_text(text: str, enc: Encoder) -> int:
    if len(text) < _REMEMBER_CHARS:
        # encode_ordinary: user text may contain "<|endoftext|>" and must be counted as text.
        return len(enc.encode_ordinary(text))
    key = (id(enc), len(text), hash(text))
    hit = _remembered.get(key)
    if hit is not None and hit[0] is enc:  # the encoder itself, not one that took its id
        return hit[1]
    n = len(enc.encode_ordinary(text))
    with _REMEMBER_LOCK:
        _remembered[key] = (enc, n)
        while len(_remembered) > _REMEMBERED_MAX:
            del _remembered[next(iter(_remembered))]
    return n


# --- estimates for models without an exact tokenizer --------------------------------------
#
# Upper: cl100k_base x 1.25, plus 2/3 token per ASCII digit. cl100k is never below o200k on
# non-Latin scripts (x1.4 on CJK, x3.2 on Hindi in tests/test_tokens.py) and within 2% of it on
# ASCII, so it is the more cautious base; the 25% covers tokenizers a little less efficient than
# OpenAI's (Claude's, SentencePiece ones on English and code); the digit term covers tokenizers
# that split numbers into single digits (Gemini, Qwen, Llama 2) where cl100k groups three.
# Measured margin: >= 1.2x the larger of cl100k and o200k on every sample in the tests.
_UPPER_FACTOR = 1.25
_UPPER_PER_DIGIT = 2 / 3
_DIGITS = "0123456789"

# Lower: non-whitespace characters / 8 (CJK / 3), runs of one repeated character counted once.
# Real tokenizers spend at least one token per 4-5 non-space characters of English and per
# 1.4 characters of CJK (o200k, the most frugal measured); the divisors leave about 2x of room,
# and collapsing runs keeps separator lines ("=====", one token per 64 characters) from
# inflating it. A request is refused locally only when even this bound does not fit.
_LOWER_CHARS = 8
_LOWER_CJK_CHARS = 3
_WHITESPACE = " \t\r\n"
_RUN = re.compile(r"(\S)\1{7,}")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def estimate_upper(text: str) -> int:
    """A high estimate for an unknown tokenizer (used only to lower a completion budget)."""
    if not text:
        return 0
    digits = sum(map(text.count, _DIGITS))
    return math.ceil(_UPPER_FACTOR * count_text(text, encoding("cl100k_base")) + _UPPER_PER_DIGIT * digits)


def estimate_lower(text: str, runs: bool = True) -> int:
    """A low estimate for an unknown tokenizer (the only ground for a local refusal).

    ``runs`` False skips collapsing runs of a repeated character (the costly step): the figure is
    then at least the estimate, enough to accept what fits by it."""
    if not text:
        return 0
    chars = len(text) - sum(map(text.count, _WHITESPACE))
    if runs:
        chars -= sum(m.end() - m.start() - 1 for m in _RUN.finditer(text))
    cjk = 0 if text.isascii() else len(_CJK.findall(text))
    return max(0, math.ceil((chars - cjk) / _LOWER_CHARS + cjk / _LOWER_CJK_CHARS))


# --- prompts --------------------------------------------------------------------------------

# OpenAI cookbook "How to count tokens with tiktoken": every message is framed as
# <|start|>{role/name}\n{content}<|end|>\n (3 tokens), a name costs 1 more, and every reply is
# primed with <|start|>assistant<|message|> (3 tokens).
_PER_MESSAGE = 3
_PER_NAME = 1
_REPLY_PRIMING = 3

# Same cookbook, section 7 (tool definitions): per-function, per-property and enum overheads;
# 7 tokens per function for the o200k models (gpt-4o), 10 for the cl100k ones (gpt-4, gpt-3.5).
_FUNC_INIT = {"o200k_base": 7}
_FUNC_INIT_DEFAULT = 10
_PROP_INIT = 3
_PROP_KEY = 3
_ENUM_INIT = -3
_ENUM_ITEM = 3
_FUNC_END = 12
_PROPERTY_KEYS_COUNTED = frozenset(("type", "description", "enum"))

# OpenAI vision guide, "Calculating costs" (https://platform.openai.com/docs/guides/vision):
# detail "low" costs 85 tokens; otherwise 85 + 170 per 512px tile of the image scaled to fit
# 2048x2048 and then to a 768px shortest side: 1 tile (255) to 2x4 tiles (1445). Without
# decoding the image, "auto"/"high" are bounded by those two figures ("auto" may also pick low).
_IMAGE_BOUNDS = {"low": (85, 85), "high": (255, 1445)}
_IMAGE_BOUNDS_AUTO = (85, 1445)


@dataclass(frozen=True, slots=True)
class Bounds:
    """A prompt's token count: ``low <= real <= high``; ``exact`` when both are the real count."""

    low: int
    high: int
    exact: bool


class _Tally:
    """Accumulates a prompt's bounds: exact text counts with an encoder, estimates without.

    ``upper`` False (estimates only): the upper bound is not wanted (nothing is truncated), so the
    text is not run through cl100k for it (about 25 ms for an 80k-token prompt); ``high`` is then
    twice the lower bound, about characters / 4: a figure for the usage record, not a bound. With
    ``rough`` too, text skips the collapsing of repeated characters (a regex step per
    character, about 10 ms for 250 KB): ``low`` is then at least the lower bound, which settles
    every prompt that fits by it; the caller measures again without ``rough`` for one that does not."""

    __slots__ = ("enc", "exact", "high", "low", "rough", "upper")

    def __init__(self, enc: Encoder | None, upper: bool = True, rough: bool = False) -> None:
        self.enc = enc
        self.upper = upper or enc is not None
        self.rough = rough and not self.upper
        self.exact = True
        self.low = self.high = 0

    def text(self, s: Any) -> None:
        if not isinstance(s, str) or not s:
            return
        if self.enc is not None:
            n = count_text(s, self.enc)
            self.low += n
            self.high += n
        else:
            self.exact = False
            low = estimate_lower(s, runs=not self.rough)
            self.low += low
            self.high += estimate_upper(s) if self.upper else 2 * low

    def fixed(self, n: int) -> None:
        """Template overhead: OpenAI's numbers; for other models only part of the upper bound."""
        self.high += n
        if self.enc is not None:
            self.low += n

    def unsure(self, low: int, high: int) -> None:
        self.exact = False
        self.low += low
        self.high += high

    def unsure_json(self, value: Any) -> None:
        """Something the model sees in an undocumented form: its JSON text bounds it above."""
        s = _json_text(value)
        if self.enc is not None:
            self.unsure(0, count_text(s, self.enc))
        else:
            self.unsure(0, estimate_upper(s) if self.upper else 2 * estimate_lower(s))

    def bounds(self) -> Bounds:
        return Bounds(self.low, self.high, self.exact)


def measure_text(text: str, enc: Encoder | None, upper: bool = True, rough: bool = False) -> Bounds:
    t = _Tally(enc, upper, rough)
    t.text(text)
    return t.bounds()


def measure_chat(
    messages: Iterable[Any],
    tools: Iterable[Any] | None,
    enc: Encoder | None,
    response_format: Any = None,
    upper: bool = True,
    rough: bool = False,
) -> Bounds:
    """Bounds for a chat prompt as OpenAI bills it (``enc`` None: estimates for an unknown tokenizer;
    ``upper`` False: no upper estimate, ``rough``: a quicker lower one, see ``_Tally``).

    ``tools`` takes ``tools`` or legacy ``functions`` entries. Images, audio, files and a
    ``json_schema`` response format make the count inexact: their cost is bounded, not known.
    """
    t = _Tally(enc, upper, rough)
    for m in messages:
        _message(t, m)
    if tools:
        _tools(t, tools, _FUNC_INIT.get(enc.name, _FUNC_INIT_DEFAULT) if enc is not None else _FUNC_INIT_DEFAULT)
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        t.unsure_json(response_format.get("json_schema"))
    t.fixed(_REPLY_PRIMING)
    return t.bounds()


def count_chat(messages: list[Any], tools: list[Any] | None, enc: Encoder) -> int:
    """OpenAI's billed prompt tokens for a chat request (images at their upper estimate)."""
    return measure_chat(messages, tools, enc).high


def _message(t: _Tally, m: Any) -> None:
    t.fixed(_PER_MESSAGE)
    if not isinstance(m, dict):
        return
    for key, value in m.items():
        if key == "name":
            t.fixed(_PER_NAME)
        if isinstance(value, str):
            t.text(value)
        elif key == "content" and isinstance(value, list):
            for part in value:
                _part(t, part)
        elif key == "tool_calls" and isinstance(value, list):
            for call in value:
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    t.text(fn.get("name"))
                    t.text(fn.get("arguments"))
        elif key == "function_call" and isinstance(value, dict):
            t.text(value.get("name"))
            t.text(value.get("arguments"))
        elif isinstance(value, dict | list):
            t.unsure_json(value)


def _part(t: _Tally, part: Any) -> None:
    if not isinstance(part, dict):
        return
    kind = part.get("type")
    if kind == "text":
        t.text(part.get("text"))
    elif kind == "refusal":
        t.text(part.get("refusal"))
    elif kind == "image_url":
        image = part.get("image_url")
        detail = image.get("detail") if isinstance(image, dict) else None
        t.unsure(*_IMAGE_BOUNDS.get(detail, _IMAGE_BOUNDS_AUTO))
    else:
        # input_audio, file, ...: no documented cost we could bound without decoding them.
        t.unsure(0, 0)


def _tools(t: _Tally, tools: Iterable[Any], func_init: int) -> None:
    counted = False
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        fn = tool.get("function") if "function" in tool else tool  # tools[] or legacy functions[]
        if tool.get("type", "function") != "function" or not isinstance(fn, dict):
            t.unsure_json(tool)
            continue
        counted = True
        t.fixed(func_init)
        t.text(f"{fn.get('name', '')}:{_strip_period(fn.get('description'))}")
        params = fn.get("parameters")
        props = params.get("properties") if isinstance(params, dict) else None
        if isinstance(props, dict) and props:
            t.fixed(_PROP_INIT)
            for key, spec in props.items():
                _property(t, str(key), spec if isinstance(spec, dict) else {})
    if counted:
        t.fixed(_FUNC_END)


def _property(t: _Tally, key: str, spec: dict[str, Any]) -> None:
    t.fixed(_PROP_KEY)
    enum = spec.get("enum")
    if isinstance(enum, list):
        t.fixed(_ENUM_INIT)
        for item in enum:
            t.fixed(_ENUM_ITEM)
            t.text(item if isinstance(item, str) else _json_text(item))
    ptype = spec.get("type")
    ptype = ptype if isinstance(ptype, str) else _json_text(ptype)
    t.text(f"{key}:{ptype}:{_strip_period(spec.get('description'))}")
    # Nested schemas (items, properties, anyOf, ...) are beyond the cookbook's formula.
    extra = {k: v for k, v in spec.items() if k not in _PROPERTY_KEYS_COUNTED}
    if extra:
        t.unsure_json(extra)


def _strip_period(desc: Any) -> str:
    desc = desc if isinstance(desc, str) else ""
    return desc[:-1] if desc.endswith(".") else desc


def _json_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError: nesting deeper than orjson serialises
        return ""
