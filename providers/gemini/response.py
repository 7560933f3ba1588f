"""Gemini ``GenerateContentResponse`` -> OpenAI ``chat.completion`` / ``text_completion``: candidates,
parts, finish reasons, usage and logprobs (https://ai.google.dev/api/generate-content)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from gateway.errors import GatewayError
from gateway.wire.types import CHAT
from providers.base import TEXT_COMPLETION, FinishReason, finish_reasons, new_id, usage_dict

if TYPE_CHECKING:
    from providers.base import CallContext
    from providers.gemini import GeminiAdapter

# finishReason -> OpenAI finish_reason (https://ai.google.dev/api/generate-content#FinishReason);
# any reason not listed (OTHER, LANGUAGE, MALFORMED_FUNCTION_CALL...) becomes "stop".
FINISH = finish_reasons(
    stop="STOP",
    length="MAX_TOKENS",
    content_filter="SAFETY RECITATION BLOCKLIST PROHIBITED_CONTENT SPII IMAGE_SAFETY IMAGE_PROHIBITED_CONTENT",
)


def answer(adapter: GeminiAdapter, endpoint: str, obj: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    cands = obj.get("candidates")
    if not cands:
        raise blocked(adapter, obj, endpoint) or adapter.bad_response("no 'candidates' in the response")
    if not isinstance(cands, list) or not all(isinstance(c, dict) for c in cands):
        raise adapter.bad_response("'candidates' is not a list of objects")
    prefix, kind, choice = (
        ("chatcmpl-", "chat.completion", _chat_choice)
        if endpoint == CHAT
        else ("cmpl-", TEXT_COMPLETION, _completion_choice)
    )
    out: dict[str, Any] = {
        "id": prefix + str(obj.get("responseId") or new_id("")),
        "object": kind,
        "created": ctx.created,
        "model": ctx.client_model,
        "choices": sorted((choice(c, ctx) for c in cands), key=lambda ch: ch["index"]),
    }
    usage = gemini_usage(obj.get("usageMetadata"))
    if usage is not None:
        out["usage"] = usage
    return out


def blocked(adapter: GeminiAdapter, obj: dict[str, Any], endpoint: str) -> GatewayError | None:
    """The 400 for a prompt Gemini refused outright (``promptFeedback.blockReason``), else None."""
    fb = obj.get("promptFeedback")
    reason = fb.get("blockReason") if isinstance(fb, dict) else None
    if not reason:
        return None
    detail = f" ({fb['blockReasonMessage']})" if fb.get("blockReasonMessage") else ""
    return GatewayError(
        400,
        f"{adapter.name}: the prompt was blocked by the provider's safety filters (blockReason: {reason}){detail}.",
        type="invalid_request_error",
        param="messages" if endpoint == CHAT else "prompt",
        code="content_filter",
        reason="content_filter",
    )


def gemini_usage(meta: Any) -> dict[str, Any] | None:
    """``usageMetadata`` -> OpenAI usage. Thinking tokens are billed as output, so they count as
    completion tokens (and show as ``reasoning_tokens``); tool-use prompt tokens count as prompt."""
    if not isinstance(meta, dict) or not isinstance(meta.get("promptTokenCount"), int):
        return None
    prompt = meta["promptTokenCount"] + int(meta.get("toolUsePromptTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    extra: dict[str, Any] = {}
    if thoughts:
        extra["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    if meta.get("cachedContentTokenCount"):
        extra["prompt_tokens_details"] = {"cached_tokens": int(meta["cachedContentTokenCount"])}
    return usage_dict(prompt, int(meta.get("candidatesTokenCount") or 0) + thoughts, **extra)


def parts_of(cand: dict[str, Any]) -> list[dict[str, Any]]:
    content = cand.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    # Thought summaries ("thought": true) are the model's reasoning, not its answer.
    return [p for p in parts or [] if isinstance(p, dict) and not p.get("thought")]


def text_of(parts: list[dict[str, Any]]) -> str:
    return "".join(p["text"] for p in parts if isinstance(p.get("text"), str))


def tool_calls_of(parts: list[dict[str, Any]], ctx: CallContext) -> list[dict[str, Any]]:
    """``functionCall`` parts -> OpenAI tool calls; each signature handed out is also noted in
    ``ctx.signatures``, so the gateway can put it back when a client replays the call without it."""
    calls = []
    for p in parts:
        fc = p.get("functionCall")
        if not isinstance(fc, dict):
            continue
        call: dict[str, Any] = {
            "id": new_id("call_"),
            "type": "function",
            "function": {"name": fc.get("name", ""), "arguments": orjson.dumps(fc.get("args") or {}).decode()},
        }
        sig = p.get("thoughtSignature")
        if isinstance(sig, str):
            # Google's own OpenAI-compatible shape, so clients that replay the message send it back.
            call["extra_content"] = {"google": {"thought_signature": sig}}
            if ctx.signatures is None:
                ctx.signatures = {}
            ctx.signatures[call["id"]] = sig
        calls.append(call)
    return calls


def finish_of(cand: dict[str, Any], has_calls: bool) -> FinishReason | None:
    reason = cand.get("finishReason")
    if not reason:
        return None
    mapped = FINISH.get(reason, "stop")
    return "tool_calls" if mapped == "stop" and has_calls else mapped


def index_of(cand: dict[str, Any]) -> int:
    # Proto3 JSON omits zero values, so a missing index is candidate 0.
    idx = cand.get("index")
    return idx if isinstance(idx, int) else 0


def _chat_choice(cand: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    parts = parts_of(cand)
    calls = tool_calls_of(parts, ctx)
    text = text_of(parts)
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else ""), "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return {
        "index": index_of(cand),
        "message": message,
        "logprobs": chat_logprobs_of(cand),
        "finish_reason": finish_of(cand, bool(calls)) or "stop",
    }


def _completion_choice(cand: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    return {
        "text": text_of(parts_of(cand)),
        "index": index_of(cand),
        "logprobs": completion_logprobs_of(cand, 0),
        "finish_reason": finish_of(cand, False) or "stop",
    }


def _steps(cand: dict[str, Any]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]] | None:
    """``logprobsResult`` as (chosen token, its top alternatives) per decoding step."""
    res = cand.get("logprobsResult")
    if not isinstance(res, dict) or not isinstance(res.get("chosenCandidates"), list):
        return None
    tops = res.get("topCandidates") or []
    out = []
    for i, chosen in enumerate(res["chosenCandidates"]):
        top = tops[i].get("candidates") if i < len(tops) and isinstance(tops[i], dict) else None
        out.append((chosen, top or []))
    return out


def chat_logprobs_of(cand: dict[str, Any]) -> dict[str, Any] | None:
    steps = _steps(cand)
    if steps is None:
        return None

    def entry(c: dict[str, Any]) -> dict[str, Any]:
        tok = str(c.get("token", ""))
        return {"token": tok, "logprob": c.get("logProbability", 0.0), "bytes": list(tok.encode())}

    return {"content": [{**entry(ch), "top_logprobs": [entry(t) for t in top]} for ch, top in steps], "refusal": None}


def completion_logprobs_of(cand: dict[str, Any], offset: int) -> dict[str, Any] | None:
    steps = _steps(cand)
    if steps is None:
        return None
    tokens = [str(ch.get("token", "")) for ch, _ in steps]
    offsets = []
    for tok in tokens:
        offsets.append(offset)
        offset += len(tok)
    return {
        "tokens": tokens,
        "token_logprobs": [ch.get("logProbability", 0.0) for ch, _ in steps],
        "top_logprobs": [{str(t.get("token", "")): t.get("logProbability", 0.0) for t in top} for _, top in steps],
        "text_offset": offsets,
    }
