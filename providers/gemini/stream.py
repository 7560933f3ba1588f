"""Gemini's SSE stream (``streamGenerateContent?alt=sse``) -> OpenAI chunks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.wire.types import CHAT
from providers.base import CHAT_CHUNK, TEXT_COMPLETION, StreamTranslator, chat_chunk, chunk_out, new_id
from providers.gemini.errors import google_error
from providers.gemini.request import ONE
from providers.gemini.response import (
    blocked,
    chat_logprobs_of,
    completion_logprobs_of,
    finish_of,
    gemini_usage,
    index_of,
    parts_of,
    text_of,
    tool_calls_of,
)

if TYPE_CHECKING:
    from providers.base import CallContext, SSEEvent
    from providers.gemini import GeminiAdapter


class GeminiStream(StreamTranslator):
    """Each ``data:`` frame is a whole GenerateContentResponse; Gemini sends no end marker, so the
    stream is finished once every requested candidate has reported a finishReason."""

    def __init__(self, adapter: GeminiAdapter, endpoint: str, ctx: CallContext) -> None:
        self.adapter = adapter
        self.endpoint = endpoint
        self.ctx = ctx
        self.n = (ctx.reply or ONE).n
        self.id = ("chatcmpl-" if endpoint == CHAT else "cmpl-") + new_id("")
        self.started: set[int] = set()
        self.done: set[int] = set()
        self.calls: dict[int, int] = {}  # candidate index -> tool calls sent so far
        self.offsets: dict[int, int] = {}  # candidate index -> text length so far (completion logprobs)
        self.usage = None
        self.finished = False
        self.content_chunks = 0

    def feed(self, event: SSEEvent) -> list[bytes]:
        if not event.data.strip():
            return []
        frame = self.adapter.json_object(
            event.data, "a stream frame is not JSON", "a stream frame is not a JSON object"
        )
        if isinstance(frame.get("error"), dict):
            err = frame["error"]
            code = err.get("code")
            raise google_error(self.adapter, code if isinstance(code, int) and 400 <= code < 600 else 502, err)
        usage = gemini_usage(frame.get("usageMetadata"))
        if usage is not None:
            self.usage = usage  # each frame carries the running totals; the last one is final
        cands = frame.get("candidates")
        if not cands:
            refused = blocked(self.adapter, frame, self.endpoint)
            if refused is not None:
                raise refused
            return []
        out: list[dict[str, Any]] = []
        for cand in cands:
            if isinstance(cand, dict):
                out.extend(self._candidate(cand))
        if not self.finished and len(self.done) >= self.n:
            self.finished = True
            if self.ctx.include_usage and self.usage is not None:
                out.append(self._chunk([], self.usage))
        return [chunk_out(self.ctx, c) for c in out]

    def _candidate(self, cand: dict[str, Any]) -> list[dict[str, Any]]:
        idx = index_of(cand)
        if idx in self.done:
            return []  # the candidate already finished; a repeated finishReason adds nothing
        return self._chat(cand, idx) if self.endpoint == CHAT else self._completion(cand, idx)

    def _chat(self, cand: dict[str, Any], idx: int) -> list[dict[str, Any]]:
        out = []
        if idx not in self.started:
            self.started.add(idx)
            delta0 = {"role": "assistant", "content": ""}
            out.append(self._chunk([{"index": idx, "delta": delta0, "logprobs": None, "finish_reason": None}]))
        parts = parts_of(cand)
        text = text_of(parts)
        delta: dict[str, Any] = {}
        if text:
            delta["content"] = text
        calls = tool_calls_of(parts, self.ctx)
        if calls:
            first = self.calls.get(idx, 0)
            delta["tool_calls"] = [{"index": first + k, **c} for k, c in enumerate(calls)]
            self.calls[idx] = first + len(calls)
        if delta:
            self.content_chunks += 1
            logprobs = chat_logprobs_of(cand)
            out.append(self._chunk([{"index": idx, "delta": delta, "logprobs": logprobs, "finish_reason": None}]))
        finish = finish_of(cand, self.calls.get(idx, 0) > 0)
        if finish:
            self.done.add(idx)
            out.append(self._chunk([{"index": idx, "delta": {}, "logprobs": None, "finish_reason": finish}]))
        return out

    def _completion(self, cand: dict[str, Any], idx: int) -> list[dict[str, Any]]:
        text = text_of(parts_of(cand))
        finish = finish_of(cand, False)
        if not text and not finish:
            return []
        if text:
            self.content_chunks += 1
        offset = self.offsets.get(idx, 0)
        self.offsets[idx] = offset + len(text)
        if finish:
            self.done.add(idx)
        logprobs = completion_logprobs_of(cand, offset)
        return [self._chunk([{"text": text, "index": idx, "logprobs": logprobs, "finish_reason": finish}])]

    def _chunk(self, choices: list[dict[str, Any]], usage: Any = None) -> dict[str, Any]:
        return chat_chunk(self.ctx, self.id, choices, usage, CHAT_CHUNK if self.endpoint == CHAT else TEXT_COMPLETION)
