"""A deterministic simulated model, no network: behind the ``mock`` provider and ``mock-upstream``.

It answers in the OpenAI dialect. Tokens are whitespace-separated words, so counts are
predictable in tests: the reply echoes the last user message (or the prompt), cut by
``max_tokens`` (finish_reason ``length``) or at the first ``stop`` sequence (``stop``).
Embeddings are unit vectors seeded by the input's sha256, of up to ``MAX_DIMENSIONS`` dimensions.

Every size it builds is bounded (``simulators/bounds.py``): the fields it reads are checked and a
request asking for more than a bound, or a field of the wrong type, is a ``MockError`` (a 400 in
OpenAI's shape), never a crash nor an answer of any size.

It plays along with agents (``simulators/play.py`` has the rules): offered tools, it calls the one
``tool_choice`` forces or the last user message names, with arguments valid for the tool's schema
(finish_reason ``tool_calls``); after a tool result it answers with the tool's output; asked for
``json_schema`` or ``json_object``, it answers JSON valid for the schema.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import re
import struct
import time
from itertools import islice
from typing import Any

import orjson

from gateway.wire.types import CHAT, COMPLETIONS
from simulators import play
from simulators.bounds import (
    MAX_N,
    MAX_OUTPUT_CHARS,
    MAX_OUTPUT_TOKENS,
    MAX_TOP_LOGPROBS,
    MockError,
    check_embedding,
    integer,
)

_WORD = re.compile(r"\s*\S+")
DEFAULT_REPLY = "Hello from the Switchyard mock model."
FILLER = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
]
DEFAULT_DIMENSIONS = 1536


def count_tokens(text: str) -> int:
    return len(text.split())


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"]
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        )
    return ""


def _last_user(msgs: list[Any]) -> str:
    return next(
        (_text_of(m.get("content")) for m in reversed(msgs) if isinstance(m, dict) and m.get("role") == "user"), ""
    )


def _source(msgs: list[Any]) -> str:
    """What a text answer echoes: the tool results that end the conversation, else the last user text."""
    results = []
    for m in reversed(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("tool", "function"):
            break
        results.append(_text_of(m.get("content")))
    return " ".join(reversed(results)) if results else _last_user(msgs)


def _messages(body: dict[str, Any]) -> list[Any]:
    msgs = body.get("messages")
    return msgs if isinstance(msgs, list) else []


def _prompt_tokens(body: dict[str, Any]) -> int:
    return sum(count_tokens(_text_of(m.get("content"))) for m in _messages(body) if isinstance(m, dict))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _tokens_text(tokens: list[Any]) -> str:
    if not all(_is_int(t) for t in tokens):
        raise MockError("Invalid 'prompt': a token list holds integers only.", "prompt", code="invalid_type")
    return " ".join(f"t{t}" for t in tokens)


def _prompt_texts(prompt: Any) -> list[str]:
    if prompt is None:
        return [""]
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(_is_int(t) for t in prompt):
        return [" ".join(f"t{t}" for t in prompt)]
    if isinstance(prompt, list):
        return [p if isinstance(p, str) else _tokens_text(p if isinstance(p, list) else [p]) for p in prompt]
    raise MockError("Invalid type for 'prompt': expected a string or an array.", "prompt", code="invalid_type")


class _Budget:
    """What is left of one answer's output bounds, shared by its choices."""

    __slots__ = ("chars", "tokens")

    def __init__(self) -> None:
        self.tokens = MAX_OUTPUT_TOKENS
        self.chars = MAX_OUTPUT_CHARS

    def take(self, pieces: list[str]) -> tuple[list[str], bool]:
        """The pieces that fit (the last one cut to fit), and whether any was cut."""
        out: list[str] = []
        for p in pieces:
            if self.tokens <= 0 or self.chars <= 0:
                return out, True
            if len(p) > self.chars:
                out.append(p[: self.chars])
                self.chars = 0
                self.tokens -= 1
                return out, True
            out.append(p)
            self.tokens -= 1
            self.chars -= len(p)
        return out, False


def _pieces(text: str, min_pieces: int | None, limit: int) -> list[str]:
    """Split into word pieces (each with its leading space), at most ``limit`` of them (the text is
    read no further); pad with filler to ``min_pieces``."""
    pieces = [m.group() for m in islice(_WORD.finditer(text), limit)]
    if min_pieces is not None:
        i = 0
        while len(pieces) < min(min_pieces, limit):
            pieces.append((" " if pieces else "") + FILLER[i % len(FILLER)])
            i += 1
        pieces = pieces[:min_pieces]
    return pieces


def _stops(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return [s for s in stop if s]
    raise MockError("Invalid type for 'stop': expected a string or an array of strings.", "stop", code="invalid_type")


def _max_tokens(body: dict[str, Any], chat: bool, default: int | None) -> int | None:
    """The completion budget: ``max_completion_tokens`` (chat) or ``max_tokens``; 0 means unset."""
    mct = integer(body, "max_completion_tokens", None, 0, None) if chat else None
    return mct or integer(body, "max_tokens", None, 0, None) or default


def _generate(
    source: str, max_tokens: int | None, stops: list[str], min_pieces: int | None, budget: _Budget
) -> tuple[list[str], str]:
    """The completion's pieces and finish_reason for one choice."""
    limit = budget.tokens + 1 if max_tokens is None else min(max_tokens, budget.tokens) + 1
    pieces = _pieces(source or DEFAULT_REPLY, min_pieces, limit)
    finish = "stop"
    if max_tokens is not None and len(pieces) > max_tokens:
        pieces = pieces[:max_tokens]
        finish = "length"
    if stops:
        text = "".join(pieces)
        cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
        if cut >= 0:
            text = text[:cut]
            pieces = _WORD.findall(text) or ([text] if text else [])
            finish = "stop"
    pieces, cut_short = budget.take(pieces)
    return pieces, "length" if cut_short else finish


def _chat_logprobs(pieces: list[str], top: int) -> dict[str, Any]:
    content = []
    for p in pieces:
        content.append(
            {
                "token": p,
                "logprob": -0.01,
                "bytes": list(p.encode()),
                "top_logprobs": [{"token": p, "logprob": -0.01, "bytes": list(p.encode())}][:top]
                + [
                    {"token": f"alt{k}", "logprob": -5.0 - k, "bytes": list(f"alt{k}".encode())}
                    for k in range(max(top - 1, 0))
                ],
            }
        )
    return {"content": content, "refusal": None}


def _completion_logprobs(pieces: list[str], top: int, offset: int) -> dict[str, Any]:
    offsets, pos = [], offset
    for p in pieces:
        offsets.append(pos)
        pos += len(p)
    return {
        "tokens": pieces,
        "token_logprobs": [-0.01] * len(pieces),
        "top_logprobs": [{p: -0.01, **{f"alt{k}": -5.0 - k for k in range(max(top - 1, 0))}} for p in pieces],
        "text_offset": offsets,
    }


class Simulator:
    """OpenAI-dialect answers for chat, completions and embeddings."""

    def __init__(self, chunks: int | None = None) -> None:
        self.chunks = chunks  # fixed number of content pieces (benchmarks), else one per word

    # -- chat ------------------------------------------------------------------------------
    def chat(self, body: dict[str, Any]) -> tuple[list[tuple[list[str], str]], int]:
        """The text answer of each choice (pieces, finish_reason) and the prompt's tokens."""
        msgs = _messages(body)
        prompt_tokens = _prompt_tokens(body)
        n = integer(body, "n", 1, 1, MAX_N) or 1
        max_tokens, stops, budget = _max_tokens(body, True, None), _stops(body), _Budget()
        wants_json, schema = play.chat_json_schema(body)
        if wants_json:  # JSON is never padded to a chunk count: that would break it
            source = play.json_text(schema, _last_user(msgs))
            return [_generate(source, max_tokens, stops, None, budget) for _ in range(n)], prompt_tokens
        return [_generate(_source(msgs), max_tokens, stops, self.chunks, budget) for _ in range(n)], prompt_tokens

    def tool_call(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The tool call this chat request is answered with, if any (see ``simulators/play.py``)."""
        last_user = _last_user(_messages(body))
        tool = play.chat_tool_to_call(body, last_user)
        if tool is None:
            return None
        args = play.dumps(play.arguments(tool, last_user))
        return {
            "id": play.call_id("call_", tool.name, last_user),
            "type": "function",
            "function": {"name": tool.name, "arguments": args},
        }

    def chat_response(self, body: dict[str, Any]) -> dict[str, Any]:
        call = self.tool_call(body)
        if call is not None:
            return self._tool_call_response(body, call)
        outs, prompt_tokens = self.chat(body)
        want_lp = body.get("logprobs") is True
        top = integer(body, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS) or 0
        choices = []
        completion_tokens = 0
        for i, (pieces, finish) in enumerate(outs):
            completion_tokens += len(pieces)
            choices.append(
                {
                    "index": i,
                    "message": {"role": "assistant", "content": "".join(pieces), "refusal": None, "annotations": []},
                    "logprobs": _chat_logprobs(pieces, top) if want_lp else None,
                    "finish_reason": finish,
                }
            )
        return _envelope("chatcmpl-mock", "chat.completion", body, choices, _usage(prompt_tokens, completion_tokens))

    def _tool_call_response(self, body: dict[str, Any], call: dict[str, Any]) -> dict[str, Any]:
        prompt_tokens = _prompt_tokens(body)
        n = body.get("n") or 1
        message = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None, "annotations": []}
        choices = [{"index": i, "message": message, "logprobs": None, "finish_reason": "tool_calls"} for i in range(n)]
        completion = count_tokens(call["function"]["arguments"]) * n
        return _envelope("chatcmpl-mock", "chat.completion", body, choices, _usage(prompt_tokens, completion))

    def _tool_call_stream(self, body: dict[str, Any], call: dict[str, Any]) -> list[bytes]:
        """OpenAI's stream of a tool call: the call's id and name first, then its arguments in pieces."""
        base = _head("chatcmpl-mock", "chat.completion.chunk", body)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if include_usage:
            base["usage"] = None
        fn = call["function"]
        pieces = _WORD.findall(fn["arguments"])
        events = []
        for i in range(body.get("n") or 1):
            head = {**call, "index": 0, "function": {"name": fn["name"], "arguments": ""}}
            delta = {"role": "assistant", "content": None, "tool_calls": [head], "refusal": None}
            events.append({"index": i, "delta": delta, "logprobs": None, "finish_reason": None})
            for p in pieces:
                delta = {"tool_calls": [{"index": 0, "function": {"arguments": p}}]}
                events.append({"index": i, "delta": delta, "logprobs": None, "finish_reason": None})
            events.append({"index": i, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"})
        out = [orjson.dumps({**base, "choices": [c]}) for c in events]
        if include_usage:
            usage = _usage(_prompt_tokens(body), len(pieces) * (body.get("n") or 1))
            out.append(orjson.dumps({**base, "choices": [], "usage": usage}))
        return out

    def chat_stream(self, body: dict[str, Any]) -> list[bytes]:
        call = self.tool_call(body)
        if call is not None:
            return self._tool_call_stream(body, call)
        outs, prompt_tokens = self.chat(body)
        include_usage = _include_usage(body)
        want_lp = body.get("logprobs") is True
        top = integer(body, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS) or 0
        base = _head("chatcmpl-mock", "chat.completion.chunk", body)
        if include_usage:
            base["usage"] = None
        events: list[bytes] = []

        def emit(choices: list[dict[str, Any]], **extra: Any) -> None:
            events.append(orjson.dumps({**base, "choices": choices, **extra}))

        completion_tokens = 0
        for i in range(len(outs)):
            emit(
                [
                    {
                        "index": i,
                        "delta": {"role": "assistant", "content": "", "refusal": None},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ]
            )
        for i, (pieces, _finish) in enumerate(outs):
            for p in pieces:
                completion_tokens += 1
                lp = _chat_logprobs([p], top) if want_lp else None
                emit([{"index": i, "delta": {"content": p}, "logprobs": lp, "finish_reason": None}])
        for i, (_pieces, finish) in enumerate(outs):
            emit([{"index": i, "delta": {}, "logprobs": None, "finish_reason": finish}])
        if include_usage:
            emit([], usage=_usage(prompt_tokens, completion_tokens))
        return events

    # -- completions -------------------------------------------------------------------------
    def completion(self, body: dict[str, Any]) -> tuple[list[tuple[str, list[str], str]], int]:
        prompts = _prompt_texts(body.get("prompt"))
        n = integer(body, "n", 1, 1, MAX_N) or 1
        if len(prompts) * n > MAX_N * 16:
            raise MockError(f"The mock model answers at most {MAX_N * 16} choices (prompts x n) per request.", "n")
        max_tokens, stops, budget = _max_tokens(body, False, 16), _stops(body), _Budget()
        outs = []
        prompt_tokens = 0
        for text in prompts:
            prompt_tokens += count_tokens(text)
            for _ in range(n):
                pieces, finish = _generate(text, max_tokens, stops, self.chunks, budget)
                outs.append((text, pieces, finish))
        return outs, prompt_tokens

    def completion_response(self, body: dict[str, Any]) -> dict[str, Any]:
        outs, prompt_tokens = self.completion(body)
        echo = body.get("echo") is True
        lp = integer(body, "logprobs", None, 0, 5)
        choices = []
        completion_tokens = 0
        for i, (prompt, pieces, finish) in enumerate(outs):
            completion_tokens += len(pieces)
            head = prompt if echo else ""
            text = head + "".join(pieces)
            choices.append(
                {
                    "text": text,
                    "index": i,
                    "logprobs": _completion_logprobs(pieces, lp, len(head)) if isinstance(lp, int) else None,
                    "finish_reason": finish,
                }
            )
        return _envelope("cmpl-mock", "text_completion", body, choices, _usage(prompt_tokens, completion_tokens))

    def completion_stream(self, body: dict[str, Any]) -> list[bytes]:
        outs, prompt_tokens = self.completion(body)
        include_usage = _include_usage(body)
        echo = body.get("echo") is True
        lp = integer(body, "logprobs", None, 0, 5)
        base = _head("cmpl-mock", "text_completion", body)
        if include_usage:
            base["usage"] = None
        events: list[bytes] = []
        completion_tokens = 0
        for i, (prompt, pieces, finish) in enumerate(outs):
            if echo:
                events.append(
                    orjson.dumps(
                        {**base, "choices": [{"text": prompt, "index": i, "logprobs": None, "finish_reason": None}]}
                    )
                )
            for p in pieces:
                completion_tokens += 1
                lps = _completion_logprobs([p], lp, 0) if isinstance(lp, int) else None
                events.append(
                    orjson.dumps({**base, "choices": [{"text": p, "index": i, "logprobs": lps, "finish_reason": None}]})
                )
            events.append(
                orjson.dumps({**base, "choices": [{"text": "", "index": i, "logprobs": None, "finish_reason": finish}]})
            )
        if include_usage:
            events.append(orjson.dumps({**base, "choices": [], "usage": _usage(prompt_tokens, completion_tokens)}))
        return events

    # -- embeddings --------------------------------------------------------------------------
    def embeddings_response(self, body: dict[str, Any]) -> dict[str, Any]:
        inp = body.get("input")
        if isinstance(inp, str):
            items: list[Any] = [inp]
        elif isinstance(inp, list) and inp and all(_is_int(t) for t in inp):
            items = [inp]
        elif isinstance(inp, list):
            items = inp
        else:
            raise MockError("Invalid type for 'input': expected a string or an array.", "input", code="invalid_type")
        dims = body.get("dimensions")
        dims = check_embedding(len(items), DEFAULT_DIMENSIONS if dims is None else dims)
        b64 = body.get("encoding_format") == "base64"
        data = []
        tokens = 0
        for i, item in enumerate(items):
            text = item if isinstance(item, str) else _tokens_text(item if isinstance(item, list) else [item])
            tokens += max(count_tokens(text), 1)
            vec = embed(text, dims)
            emb: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return {
            "object": "list",
            "data": data,
            "model": body.get("model", "mock"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    # -- dispatch ----------------------------------------------------------------------------
    def respond(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        if endpoint == CHAT:
            return self.chat_response(body)
        if endpoint == COMPLETIONS:
            return self.completion_response(body)
        return self.embeddings_response(body)

    def stream(self, endpoint: str, body: dict[str, Any]) -> list[bytes]:
        return self.chat_stream(body) if endpoint == CHAT else self.completion_stream(body)


def embed(text: str, dims: Any) -> list[float]:
    dims = check_embedding(1, dims)
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    vec = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def _head(id_prefix: str, obj: str, body: dict[str, Any]) -> dict[str, Any]:
    """The fields every answer and every chunk carries."""
    return {
        "id": f"{id_prefix}{_digest(body)}",
        "object": obj,
        "created": int(time.time()),
        "model": body.get("model", "mock"),
        "system_fingerprint": "fp_mock",
    }


def _envelope(id_prefix: str, obj: str, body: dict[str, Any], choices: list[Any], usage: Any) -> dict[str, Any]:
    return {**_head(id_prefix, obj, body), "choices": choices, "usage": usage}


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _include_usage(body: dict[str, Any]) -> bool:
    opts = body.get("stream_options")
    return isinstance(opts, dict) and bool(opts.get("include_usage"))


def _digest(body: dict[str, Any]) -> str:
    try:
        raw = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # deeper than orjson writes: any stable id will do
        raw = repr(sorted(body)).encode()
    return hashlib.sha1(raw).hexdigest()[:20]
