"""gateway.pipeline.tokens: offline encodings, OpenAI-billed chat counts, estimates for unknown tokenizers."""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import json.decoder
import random
import sys
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load
from tiktoken_ext import openai_public

from gateway.pipeline import tokens
from gateway.pipeline.tokens import (
    TokenizerError,
    count_chat,
    count_text,
    encoding,
    estimate_lower,
    estimate_upper,
    measure_chat,
    tokenizer_for,
)
from tests.support import ROOT

COOKBOOK = "https://cookbook.openai.com/examples/how_to_count_tokens_with_tiktoken"


@pytest.fixture(scope="module")
def cl100k() -> tokens.Encoder:
    return encoding("cl100k_base")


@pytest.fixture(scope="module")
def o200k() -> tokens.Encoder:
    return encoding("o200k_base")


# --- the packaged encodings ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_packaged_encoding_is_tiktokens_own(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same pinned hash, split pattern and special tokens as tiktoken_ext.openai_public, fetched from nowhere."""
    pinned: dict[str, str] = {}

    def capture(url: str, expected_hash: str) -> dict[bytes, int]:
        pinned["hash"] = expected_hash
        return {}

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", capture)
    ref = openai_public.ENCODING_CONSTRUCTORS[name]()
    ours = tokens._BUILTINS[name]
    assert ours.pat_str == ref["pat_str"]
    assert ours.special_tokens == ref["special_tokens"]
    assert ours.sha256 == pinned["hash"]
    data = (ROOT / "gateway" / "data" / f"{name}.tiktoken").read_bytes()
    assert hashlib.sha256(data).hexdigest() == pinned["hash"]


# Token ids printed in the cookbook, sections 3 and 5 (COOKBOOK).
@pytest.mark.parametrize(
    ("name", "text", "ids"),
    [
        ("o200k_base", "tiktoken is great!", [83, 8251, 2488, 382, 2212, 0]),
        ("cl100k_base", "antidisestablishmentarianism", [519, 85342, 34500, 479, 8997, 2191]),
        ("o200k_base", "antidisestablishmentarianism", [493, 129901, 376, 160388, 21203, 2367]),
        ("cl100k_base", "2 + 2 = 4", [17, 489, 220, 17, 284, 220, 19]),
        ("o200k_base", "2 + 2 = 4", [17, 659, 220, 17, 314, 220, 19]),
        (
            "cl100k_base",
            "お誕生日おめでとう",
            [33334, 45918, 243, 21990, 9080, 33334, 62004, 16556, 78699],
        ),
        ("o200k_base", "お誕生日おめでとう", [8930, 9697, 243, 128225, 8930, 17693, 4344, 48669]),
    ],
)
def test_cookbook_token_ids(name: str, text: str, ids: list[int]) -> None:
    assert encoding(name).encode_ordinary(text) == ids
    assert count_text(text, encoding(name)) == len(ids)


def test_special_token_text_is_counted_as_text(cl100k: tokens.Encoder) -> None:
    # tiktoken's encode() would raise on this; a user may legitimately write it.
    assert count_text("<|endoftext|>", cl100k) > 1


def test_encoding_is_cached(cl100k: tokens.Encoder) -> None:
    assert encoding("cl100k_base") is cl100k
    assert tokens.is_loaded("cl100k_base")


def test_loading_never_asks_tiktoken_to_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("tiktoken was asked to fetch")

    monkeypatch.setattr(tiktoken.load, "read_file", refuse)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", refuse)
    monkeypatch.setattr(tiktoken, "get_encoding", refuse)
    monkeypatch.setattr(tokens, "_CACHE", {})
    assert count_text("hello world", encoding("o200k_base")) == 2


def test_corrupted_file_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytearray((ROOT / "gateway" / "data" / "cl100k_base.tiktoken").read_bytes())
    data[1000] ^= 1
    (tmp_path / "cl100k_base.tiktoken").write_bytes(bytes(data))
    monkeypatch.setattr(tokens, "_DATA_DIR", tmp_path)
    monkeypatch.setattr(tokens, "_CACHE", {})
    with pytest.raises(TokenizerError, match=r"sha256 \w+ does not match tiktoken's pinned 223921b7"):
        encoding("cl100k_base")
    assert not tokens.is_loaded("cl100k_base")


def test_missing_packaged_file_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_DATA_DIR", tmp_path)
    monkeypatch.setattr(tokens, "_CACHE", {})
    with pytest.raises(TokenizerError, match="cannot read tokenizer file"):
        encoding("o200k_base")


# --- operator-named tokenizer files ------------------------------------------------------------


def _tiny_ranks() -> bytes:
    """A tiktoken-format vocabulary: every byte, then the merges "ab" and "abab"."""
    tokens_ = [bytes([b]) for b in range(256)] + [b"ab", b"abab"]
    return b"".join(base64.b64encode(t) + b" %d\n" % i for i, t in enumerate(tokens_))


@pytest.mark.parametrize("suffix", [".tiktoken", ".model"])
def test_tiktoken_format_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"tiny{suffix}"
    path.write_bytes(_tiny_ranks())
    enc = encoding(str(path))
    assert enc.encode_ordinary("ababab") == [257, 256]
    assert count_text("abab x", enc) == 3  # "abab", " ", "x"


def test_sentencepiece_model_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.model"
    path.write_bytes(b"\n\x0e\n\x05<unk>\x15\x00\x00\x00\x00\x18\x02\x12\x01\xff")
    with pytest.raises(TokenizerError, match=r"not a tiktoken BPE file.*tokenizer\.json"):
        encoding(str(path))


@pytest.mark.parametrize(
    ("spec", "match"),
    [("p50k_base", "unknown tokenizer"), ("/nonexistent/x.tiktoken", "cannot read tokenizer file")],
)
def test_bad_tokenizer_names(spec: str, match: str) -> None:
    with pytest.raises(TokenizerError, match=match):
        encoding(spec)


def test_hf_tokenizer_json(tmp_path: Path) -> None:
    tk = pytest.importorskip("tokenizers")
    vocab = {"[UNK]": 0, "[BOS]": 1, "hello": 2, "world": 3}
    tok = tk.Tokenizer(tk.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tk.pre_tokenizers.Whitespace()
    tok.post_processor = tk.processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", 1)])
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    enc = encoding(str(path))
    assert enc.encode_ordinary("hello world again") == [2, 3, 0]  # no BOS added


def test_hf_tokenizer_json_without_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(TokenizerError, match="needs the 'tokenizers' package"):
        encoding(str(tmp_path / "tokenizer.json"))


# --- which tokenizer a deployment uses ---------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "kind", "configured", "expected"),
    [
        ("gpt-4o-mini", "openai", None, "o200k_base"),
        ("gpt-4o-2024-08-06", "azure", None, "o200k_base"),
        ("gpt-4.1-nano", "openai", None, "o200k_base"),
        ("o1-mini", "openai", None, "o200k_base"),
        ("o3", "openai", None, "o200k_base"),
        ("o4-mini", "openai", None, "o200k_base"),
        ("gpt-5", "openai", None, "o200k_base"),
        ("openai/gpt-4o", "openai", None, "o200k_base"),
        ("gpt-4-turbo", "openai", None, "cl100k_base"),
        ("gpt-4", "openai", None, "cl100k_base"),
        ("gpt-3.5-turbo-instruct", "openai", None, "cl100k_base"),
        ("gpt-35-turbo", "azure", None, "cl100k_base"),
        ("text-embedding-3-small", "openai", None, "cl100k_base"),
        ("meta-llama/Llama-3.1-8B-Instruct", "openai", None, None),
        ("claude-sonnet-4-5", "anthropic", None, None),
        ("gpt-4o", "fireworks", None, None),
        ("gemini-2.5-pro", "gemini", None, None),
        ("claude-sonnet-4-5", "anthropic", "o200k_base", "o200k_base"),
        ("gpt-4o", "openai", "/models/tok.json", "/models/tok.json"),
    ],
)
def test_tokenizer_for(model: str, kind: str, configured: str | None, expected: str | None) -> None:
    assert tokenizer_for(model, kind, configured) == expected


# --- chat prompts as OpenAI bills them -------------------------------------------------------

# COOKBOOK, section 6: "129 prompt tokens counted by the OpenAI API" for gpt-3.5-turbo and gpt-4
# (cl100k_base), "124 prompt tokens counted by the OpenAI API" for gpt-4o and gpt-4o-mini (o200k_base).
CORPORATE = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]

# COOKBOOK, section 7: with this tool, 105 prompt tokens for gpt-3.5-turbo and gpt-4, 101 for gpt-4o(-mini).
WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
WEATHER_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant that can answer to questions about the weather."},
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(("name", "billed"), [("cl100k_base", 129), ("o200k_base", 124)])
def test_chat_count_matches_openai_usage(name: str, billed: int) -> None:
    assert count_chat(CORPORATE, None, encoding(name)) == billed
    b = measure_chat(CORPORATE, None, encoding(name))
    assert (b.low, b.high, b.exact) == (billed, billed, True)


@pytest.mark.parametrize(("name", "billed"), [("cl100k_base", 105), ("o200k_base", 101)])
def test_chat_with_tools_matches_openai_usage(name: str, billed: int) -> None:
    assert count_chat(WEATHER_MESSAGES, WEATHER_TOOLS, encoding(name)) == billed
    # Legacy `functions` entries are the bare function objects.
    legacy = [t["function"] for t in WEATHER_TOOLS]
    assert count_chat(WEATHER_MESSAGES, legacy, encoding(name)) == billed


def test_chat_overheads(o200k: tokens.Encoder) -> None:
    # 3 per message + role + content, 1 more for a name, 3 to prime the reply (COOKBOOK).
    one = [{"role": "user", "content": "hello world"}]
    assert count_chat(one, None, o200k) == 3 + 1 + 2 + 3
    named = [{"role": "user", "name": "bob", "content": "hello world"}]
    assert count_chat(named, None, o200k) == 3 + 1 + 2 + 1 + 1 + 3
    assert count_chat([], None, o200k) == 3


def test_content_parts_and_tool_calls(o200k: tokens.Encoder) -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": " world"}]}]
    assert count_chat(parts, None, o200k) == count_chat([{"role": "user", "content": "hello world"}], None, o200k)
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}],
    }
    b = measure_chat([call], None, o200k)
    assert b.exact
    assert b.high == 3 + 1 + count_text("f", o200k) + count_text('{"a": 1}', o200k) + 3


# OpenAI vision guide, "Calculating costs" (https://platform.openai.com/docs/guides/vision):
# low detail 85 tokens; high detail 85 + 170 per 512px tile, 1 to 8 tiles after scaling.
@pytest.mark.parametrize(("detail", "low", "high"), [("low", 85, 85), ("high", 255, 1445), (None, 85, 1445)])
def test_image_bounds(o200k: tokens.Encoder, detail: str | None, low: int, high: int) -> None:
    image: dict[str, str] = {"url": "https://example.com/cat.png"}
    if detail:
        image["detail"] = detail
    msg = [{"role": "user", "content": [{"type": "image_url", "image_url": image}]}]
    b = measure_chat(msg, None, o200k)
    base = count_chat([{"role": "user"}], None, o200k)
    assert (b.low - base, b.high - base) == (low, high)
    assert not b.exact  # other models (gpt-4o-mini, gpt-4.1-mini) price images differently


def test_unknown_media_and_schemas_make_the_count_inexact(o200k: tokens.Encoder) -> None:
    audio = [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]
    assert not measure_chat(audio, None, o200k).exact
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    plain = measure_chat(WEATHER_MESSAGES, None, o200k)
    b = measure_chat(WEATHER_MESSAGES, None, o200k, schema)
    assert not b.exact
    assert b.low == plain.low
    assert b.high > plain.high


def test_deeply_nested_values_do_not_crash(o200k: tokens.Encoder) -> None:
    deep: object = "x"
    for _ in range(400):
        deep = [deep]
    b = measure_chat([{"role": "user", "content": "hi", "metadata": deep}], None, o200k)
    assert not b.exact


def test_estimated_chat_bounds_straddle_the_exact_counts() -> None:
    b = measure_chat(CORPORATE, None, None)
    assert not b.exact
    assert b.low <= 124 and b.high >= 129 * 1.2


# --- estimates for unknown tokenizers ----------------------------------------------------------

_rng = random.Random(1234)
SAMPLES = {
    "english": (
        "The gateway sits between applications and the model providers. It authenticates every request, "
        "picks an upstream, translates the request into that upstream's dialect and relays the answer back, "
        "streamed or not, in the shape the OpenAI SDK expects. Operators care that a request which cannot "
        "fit the model's context window fails quickly and clearly, and that one which can fit is never refused. "
    )
    * 8,
    "code": inspect.getsource(json.decoder),
    "json": json.dumps(
        [
            {"id": i, "name": f"user_{i:05d}", "score": round(_rng.random() * 1000, 3), "active": i % 3 == 0}
            for i in range(150)
        ]
    ),
    "json_pretty": json.dumps({"items": [{"k": f"v{i}", "n": [i, i * 2, i * 3]} for i in range(80)]}, indent=2),
    # Chinese punctuation is full-width on purpose.
    "chinese": "网关位于应用程序和模型提供商之间。它对每个请求进行身份验证，选择上游服务，并以期望的形式返回答案。"  # noqa: RUF001
    * 12,
    "japanese": "ゲートウェイはアプリケーションとモデル提供者の間に位置します。お誕生日おめでとう。" * 12,
    "korean": "게이트웨이는 애플리케이션과 모델 제공자 사이에 있습니다. 모든 요청을 인증합니다. " * 15,
    "russian": "Шлюз находится между приложениями и поставщиками моделей. Он проверяет каждый запрос. " * 15,
    "hindi": "गेटवे अनुप्रयोगों और मॉडल प्रदाताओं के बीच स्थित है। यह हर अनुरोध को प्रमाणित करता है। " * 15,
    "base64": base64.b64encode(_rng.randbytes(6000)).decode(),
    "hex": _rng.randbytes(3000).hex(),
    "numbers": " ".join(str(_rng.randint(0, 10**9)) for _ in range(600)),
    "emoji": "🚀🔥✨👍🏽🎉😀🇫🇷 ok " * 60,
    "separators": ("=" * 80 + "\n" + "-" * 80 + "\n") * 40,
    "indented": ("def f():\n" + " " * 16 + "return 1\n") * 100,
}


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_estimates_bound_both_openai_encodings(sample: str, cl100k: tokens.Encoder, o200k: tokens.Encoder) -> None:
    text = SAMPLES[sample]
    exact = [count_text(text, cl100k), count_text(text, o200k)]
    # The documented margins: upper >= 1.2x the larger count, lower <= 0.6x the smaller one.
    assert estimate_upper(text) >= 1.2 * max(exact)
    assert estimate_lower(text) <= 0.6 * min(exact)
    assert estimate_lower(text) >= 1


@pytest.mark.parametrize("sample", ["json", "chinese", "base64", "emoji"])
def test_bytes_over_four_is_not_an_upper_bound(sample: str, cl100k: tokens.Encoder) -> None:
    """Why the estimate is not bytes/4: these run below 4 bytes per token."""
    text = SAMPLES[sample]
    assert len(text.encode()) / 4 < count_text(text, cl100k)


def test_estimates_of_empty_text() -> None:
    assert estimate_upper("") == estimate_lower("") == 0


def test_long_texts_are_counted_once_and_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent's history comes again every turn: a long text's count is remembered (the same answer, no
    second encoding), per encoder; the memory keeps at most its bound, oldest out first."""
    enc = tokens.encoding("o200k_base")
    calls: list[int] = []

    class Counting:
        name = "counting"

        def encode_ordinary(self, text: str) -> list[int]:
            calls.append(len(text))
            return enc.encode_ordinary(text)

    counting = Counting()
    history = "The gateway relays every turn of the conversation again. " * 200
    first = tokens.count_text(history, counting)
    assert first == len(enc.encode_ordinary(history))
    assert tokens.count_text("".join([history]), counting) == first  # an equal text, another object
    assert calls == [len(history)]
    assert tokens.count_text(history + "!", counting) == len(enc.encode_ordinary(history + "!"))
    assert len(calls) == 2
    assert tokens.count_text(history, enc) == first  # another encoder counts for itself
    tokens.count_text("short", counting)
    tokens.count_text("short", counting)
    assert calls[2:] == [5, 5]  # short texts are not worth remembering

    monkeypatch.setattr(tokens, "_REMEMBERED_MAX", 3)
    monkeypatch.setattr(tokens, "_remembered", {})
    texts = [history + str(i) for i in range(5)]
    for t in texts:
        tokens.count_text(t, counting)
    assert len(tokens._remembered) == 3
    del calls[:]
    tokens.count_text(texts[-1], counting)
    tokens.count_text(texts[0], counting)
    assert calls == [len(texts[0])]  # the newest kept, the oldest gone
