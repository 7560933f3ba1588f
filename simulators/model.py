"""A deterministic simulated model, no network: behind the ``mock`` provider and ``mock-upstream``.

It answers in the OpenAI dialect. Tokens are whitespace-separated words, so counts are
predictable in tests: the reply echoes the last user message (or the prompt), cut by
``max_tokens`` (finish_reason ``length``) or at the first ``stop`` sequence (``stop``).
Embeddings are unit vectors seeded by the input's sha256, of any ``dimensions``.

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
from typing import Any

import orjson

from gateway.wire.types import CHAT, COMPLETIONS
from simulators import play

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
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
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


def _prompt_tokens(body: dict[str, Any]) -> int:
    return sum(count_tokens(_text_of(m.get("content"))) for m in body.get("messages") or [] if isinstance(m, dict))


def _prompt_texts(prompt: Any) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return [" ".join(f"t{t}" for t in prompt)]
    if isinstance(prompt, list):
        return [p if isinstance(p, str) else " ".join(f"t{t}" for t in p) for p in prompt]
    return [""]


def _pieces(text: str, min_pieces: int | None) -> list[str]:
    """Split into word pieces (each with its leading space); pad with filler to ``min_pieces``."""
    pieces = _WORD.findall(text)
    if min_pieces is not None:
        i = 0
        while len(pieces) < min_pieces:
            pieces.append((" " if pieces else "") + FILLER[i % len(FILLER)])
            i += 1
        pieces = pieces[:min_pieces]
    return pieces


def _generate(
    source: str, body: dict[str, Any], default_max: int | None, min_pieces: int | None
) -> tuple[list[str], str]:
    """The completion's pieces and finish_reason for one choice."""
    pieces = _pieces(source or DEFAULT_REPLY, min_pieces)
    finish = "stop"
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max
    if max_tokens is not None and len(pieces) > max_tokens:
        pieces = pieces[:max_tokens]
        finish = "length"
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if s]
    if stops:
        text = "".join(pieces)
        cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
        if cut >= 0:
            text = text[:cut]
            pieces = _WORD.findall(text) or ([text] if text else [])
            finish = "stop"
    return pieces, finish


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
        msgs = body.get("messages") or []
        prompt_tokens = _prompt_tokens(body)
        n = body.get("n") or 1
        wants_json, schema = play.chat_json_schema(body)
        if wants_json:  # JSON is never padded to a chunk count: that would break it
            source = play.json_text(schema, _last_user(msgs))
            return [_generate(source, body, None, None) for _ in range(n)], prompt_tokens
        return [_generate(_source(msgs), body, None, self.chunks) for _ in range(n)], prompt_tokens

    def tool_call(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The tool call this chat request is answered with, if any (see ``simulators/play.py``)."""
        last_user = _last_user(body.get("messages") or [])
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
        top = body.get("top_logprobs") or 0
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
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        want_lp = body.get("logprobs") is True
        top = body.get("top_logprobs") or 0
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
        n = body.get("n") or 1
        outs = []
        prompt_tokens = 0
        for text in prompts:
            prompt_tokens += count_tokens(text)
            for _ in range(n):
                pieces, finish = _generate(text, body, 16, self.chunks)
                outs.append((text, pieces, finish))
        return outs, prompt_tokens

    def completion_response(self, body: dict[str, Any]) -> dict[str, Any]:
        outs, prompt_tokens = self.completion(body)
        echo = body.get("echo") is True
        lp = body.get("logprobs")
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
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        echo = body.get("echo") is True
        lp = body.get("logprobs")
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
        elif isinstance(inp, list) and inp and all(isinstance(t, int) for t in inp):
            items = [inp]
        else:
            items = list(inp or [])
        dims = body.get("dimensions") or DEFAULT_DIMENSIONS
        b64 = body.get("encoding_format") == "base64"
        data = []
        tokens = 0
        for i, item in enumerate(items):
            text = item if isinstance(item, str) else " ".join(f"t{t}" for t in item)
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


def embed(text: str, dims: int) -> list[float]:
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


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha1(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:20]
