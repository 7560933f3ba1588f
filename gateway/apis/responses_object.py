"""The Response object: ``from_chat`` builds it whole from a Chat Completions answer, ``ResponsesStream``
(``responses_stream``) event by event; here too the pieces both build it from (ids, tool names,
usage, logprobs).

``response_object`` takes a ``ResponseHead`` (what a Response says from its creation on) and a
``Snapshot`` (what it says now: in progress, or how it ended), so a stream builds its head once.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import orjson

# Codes the SDK's ``ResponseError.code`` accepts; anything else is reported as ``server_error``.
_CODES = (
    "server_error rate_limit_exceeded invalid_prompt data_residency_mismatch bio_policy misalignment_policy_violation "
    "vector_store_timeout invalid_image invalid_image_format invalid_base64_image invalid_image_url image_too_large "
    "image_too_small image_parse_error image_content_policy_violation invalid_image_mode image_file_too_large "
    "unsupported_image_media_type empty_image_file failed_to_download_image image_file_not_found"
)
ERROR_CODES = frozenset(_CODES.split())
_SERVICE_TIERS = frozenset(("auto", "default", "flex", "scale", "priority", "fast", "ultrafast"))
# Chat finish reasons that leave the response incomplete, with the Responses reason.
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
LOGPROBS_INCLUDE = "message.output_text.logprobs"


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(24).hex()}"


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def chat_tool_name(namespace: str | None, name: str) -> str:
    """The flat chat name of a tool; namespaced tools get their namespace as a prefix.

    Codex names MCP namespaces ``mcp__server__`` so plain concatenation gives the flat name models know;
    other namespaces are joined with ``__`` to keep within chat's ``[a-zA-Z0-9_-]`` names.
    """
    if not namespace:
        return name
    return namespace + name if namespace.endswith("_") else f"{namespace}__{name}"


def tool_catalog(request: dict) -> dict[str, tuple[str | None, str, str]]:
    """chat tool name -> (namespace, Responses name, "function"|"custom") for the request's own tools.

    Includes tools carried by ``additional_tools`` input items, so answers can be mapped back.
    """
    catalog: dict[str, tuple[str | None, str, str]] = {}

    def add(tools: Any) -> None:
        for tool in tools if isinstance(tools, list) else ():
            if not isinstance(tool, dict):
                continue
            kind, name = tool.get("type"), tool.get("name")
            if kind in ("function", "custom") and isinstance(name, str):
                catalog[name] = (None, name, kind)
            elif kind == "namespace" and isinstance(name, str):
                for inner in tool.get("tools") or ():
                    if isinstance(inner, dict) and inner.get("type") in ("function", "custom"):
                        iname = inner.get("name")
                        if isinstance(iname, str):
                            catalog[chat_tool_name(name, iname)] = (name, iname, inner["type"])

    add(request.get("tools"))
    items = request.get("input")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and item.get("type") == "additional_tools":
                add(item.get("tools"))
    return catalog


def unwrap_custom_input(arguments: str) -> str:
    """The ``input`` string of ``{"input": ...}`` arguments; a model that sent anything else gets it verbatim."""
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get("input"), str):
        return value["input"]
    return arguments


def tool_call_item(tool: tuple[str | None, str, str], call_id: str, status: str, value: str) -> dict:
    """A ``function_call`` or ``custom_tool_call`` output item for ``tool`` (namespace, name, kind, as
    ``tool_catalog`` gives it); ``value`` is its arguments or its input."""
    ns, name, kind = tool
    if kind == "custom":
        item = {"id": new_id("ctc"), "type": "custom_tool_call", "status": status, "call_id": call_id}
        item.update(name=name, input=value)
    else:
        item = {"id": new_id("fc"), "type": "function_call", "status": status, "call_id": call_id}
        item.update(name=name, arguments=value)
    if ns:
        item["namespace"] = ns
    return item


def responses_usage(usage: Any) -> dict:
    """Chat usage -> Responses usage; always an object (zeros when the provider sent none)."""
    u = usage if isinstance(usage, dict) else {}
    ptd = u.get("prompt_tokens_details") if isinstance(u.get("prompt_tokens_details"), dict) else {}
    ctd = u.get("completion_tokens_details") if isinstance(u.get("completion_tokens_details"), dict) else {}
    inp, out = _int(u.get("prompt_tokens")), _int(u.get("completion_tokens"))
    total = u.get("total_tokens")
    return {
        "input_tokens": inp,
        # cache_write_tokens is required by the SDK's model; the chat form only knows it when a provider says.
        "input_tokens_details": {
            "cached_tokens": _int(ptd.get("cached_tokens")),
            "cache_write_tokens": _int(ptd.get("cache_write_tokens")),
        },
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": _int(ctd.get("reasoning_tokens"))},
        "total_tokens": total if _int(total) else inp + out,
    }


def logprobs_of(chat_logprobs: Any) -> list[dict]:
    """Chat ``choice.logprobs`` -> the ``logprobs`` of an ``output_text`` part (bytes must be a list)."""
    content = chat_logprobs.get("content") if isinstance(chat_logprobs, dict) else None
    if not isinstance(content, list):
        return []
    out = []
    for lp in content:
        if not isinstance(lp, dict):
            continue
        top = [
            {"token": t.get("token", ""), "logprob": t.get("logprob", 0.0), "bytes": t.get("bytes") or []}
            for t in lp.get("top_logprobs") or ()
            if isinstance(t, dict)
        ]
        out.append(
            {
                "token": lp.get("token", ""),
                "logprob": lp.get("logprob", 0.0),
                "bytes": lp.get("bytes") or [],
                "top_logprobs": top,
            }
        )
    return out


def wants_logprobs(request: dict) -> bool:
    include = request.get("include")
    return _int(request.get("top_logprobs")) > 0 or (isinstance(include, list) and LOGPROBS_INCLUDE in include)


@dataclass(slots=True)
class ResponseHead:
    """What a Response says from its creation on: the request it echoes, its id, when, the client's model name."""

    request: dict
    id: str
    created_at: int
    model: str


@dataclass(slots=True)
class Snapshot:
    """What a Response says at one moment: its status and output so far, and how it ended."""

    status: str
    output: list
    usage: dict | None = None
    incomplete_reason: str | None = None
    error: dict | None = None
    completed_at: int | None = None
    service_tier: Any = None  # the provider's, when it named one


def response_object(head: ResponseHead, now: Snapshot) -> dict:
    """A Response object with every field OpenAI always sends, echoing the request's settings."""
    request = head.request
    text = request.get("text") if isinstance(request.get("text"), dict) else {}
    reasoning = request.get("reasoning") if isinstance(request.get("reasoning"), dict) else {}
    tier = now.service_tier if now.service_tier in _SERVICE_TIERS else request.get("service_tier")
    resp: dict[str, Any] = {
        "id": head.id,
        "object": "response",
        "created_at": head.created_at,
        "status": now.status,
        "background": False,
        "error": now.error,
        "incomplete_details": {"reason": now.incomplete_reason} if now.incomplete_reason else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": request.get("max_tool_calls"),
        "model": head.model,
        "output": now.output,
        "parallel_tool_calls": request.get("parallel_tool_calls") is not False,
        "previous_response_id": request.get("previous_response_id"),
        "prompt_cache_key": request.get("prompt_cache_key"),
        "reasoning": {
            "effort": reasoning.get("effort"),
            "summary": reasoning.get("summary") or reasoning.get("generate_summary"),
        },
        "safety_identifier": request.get("safety_identifier"),
        "service_tier": tier if tier in _SERVICE_TIERS else "default",
        "store": request.get("store") is not False,
        "temperature": request["temperature"] if request.get("temperature") is not None else 1.0,
        "text": {"format": text.get("format") or {"type": "text"}, "verbosity": text.get("verbosity") or "medium"},
        "tool_choice": request.get("tool_choice") if request.get("tool_choice") is not None else "auto",
        "tools": request.get("tools") or [],
        "top_logprobs": _int(request.get("top_logprobs")),
        "top_p": request["top_p"] if request.get("top_p") is not None else 1.0,
        "truncation": request.get("truncation") or "disabled",
        "usage": now.usage,
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }
    if now.completed_at is not None:
        resp["completed_at"] = now.completed_at
    return resp


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # a few servers answer with parts
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    return ""


def from_chat(
    answer: dict, request: dict, resp_id: str, created_at: int, model: str, *, completed_at: int | None = None
) -> dict:
    """A Chat Completions answer -> the complete Response object (``model`` is the name the client asked for)."""
    choices = answer.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    reason = INCOMPLETE.get(choice.get("finish_reason") or "")
    output: list[dict] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        output.append(
            {"id": new_id("rs"), "type": "reasoning", "summary": [{"type": "summary_text", "text": reasoning}]}
        )
    content: list[dict] = []
    text = _text_of(message.get("content"))
    if text:
        lps = logprobs_of(choice.get("logprobs")) if wants_logprobs(request) else []
        content.append({"type": "output_text", "annotations": [], "logprobs": lps, "text": text})
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        content.append({"type": "refusal", "refusal": message["refusal"]})
    if content:
        output.append(
            {"id": new_id("msg"), "type": "message", "status": "completed", "content": content, "role": "assistant"}
        )
    catalog = tool_catalog(request)
    for tc in message.get("tool_calls") or ():
        fn = tc.get("function") if isinstance(tc, dict) and isinstance(tc.get("function"), dict) else {}
        chat_name = fn.get("name") if isinstance(fn.get("name"), str) else ""
        tool = catalog.get(chat_name, (None, chat_name, "function"))
        args = fn.get("arguments") if isinstance(fn.get("arguments"), str) else ""
        value = unwrap_custom_input(args) if tool[2] == "custom" else args
        output.append(tool_call_item(tool, tc.get("id") or new_id("call"), "completed", value))
    if reason and output and output[-1]["type"] != "reasoning":
        output[-1]["status"] = "incomplete"  # the item the cut fell in
    status = "incomplete" if reason else "completed"
    if status == "completed" and completed_at is None:
        completed_at = int(time.time())
    now = Snapshot(
        status,
        output,
        responses_usage(answer.get("usage")),
        incomplete_reason=reason,
        completed_at=completed_at if status == "completed" else None,
        service_tier=answer.get("service_tier"),
    )
    return response_object(ResponseHead(request, resp_id, created_at, model), now)
