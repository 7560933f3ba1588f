"""``POST /v1/messages/count_tokens``: Anthropic's token count, for any model.

A native Anthropic provider counts itself (the body as sent, only ``model`` rewritten). Otherwise
the gateway counts the prompt in the chat form: exactly where the model's tokenizer is known,
else an upper bound, marked ``x-switchyard-estimated: true``. Never an understatement.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import orjson

from gateway.apis.messages import count_text, validate
from gateway.errors import model_not_allowed
from gateway.pipeline.frame import RequestContext
from gateway.pipeline.generation import fetch, parse_body
from gateway.pipeline.tokens import encoding, measure_chat, tokenizer_for
from gateway.pipeline.validate import model_of
from gateway.wire.asgi import Receive, Send, send_json

if TYPE_CHECKING:
    from gateway.pipeline.routing import Deployment

ROUTE = "/v1/messages/count_tokens"
_INLINE_CHARS = 32 * 1024  # larger prompts are counted in a worker thread


async def count_tokens(ctx: RequestContext, receive: Receive, send: Send) -> None:
    state = ctx.state
    raw = ctx.body  # read by the frame
    body = parse_body(raw)
    model = model_of(body)
    if model is not None:
        ctx.model = model
    # count_tokens takes messages.create's body without max_tokens: check the rest the same way.
    validate({**body, "max_tokens": body.get("max_tokens") or 1 << 30})
    route = state.router.resolve(ctx.model)
    if not ctx.who.allows(ctx.model):
        raise model_not_allowed(ctx.model)
    dep = route.deployments[0]
    ctx.provider = dep.provider
    adapter = dep.adapter
    if "messages" in adapter.native_apis:
        data = await _forward(ctx, dep, body)
        return await _answer(ctx, send, data, estimated=False)
    messages, _tools_text = count_text(body, dep.provider)
    chat = {"messages": messages, "tools": [_tool(t) for t in body.get("tools") or () if isinstance(t, dict)]}
    name = tokenizer_for(dep.target.upstream_model, adapter.kind, dep.facts.tokenizer)
    enc = encoding(name) if name else None
    if len(raw) > _INLINE_CHARS:
        bounds = await asyncio.to_thread(measure_chat, chat["messages"], chat["tools"], enc)
    else:
        bounds = measure_chat(chat["messages"], chat["tools"], enc)
    await _answer(ctx, send, orjson.dumps({"input_tokens": bounds.high}), estimated=not bounds.exact)


def _tool(t: dict) -> dict:
    return {
        "type": "function",
        "function": {"name": t.get("name"), "description": t.get("description"), "parameters": t.get("input_schema")},
    }


async def _forward(ctx: RequestContext, dep: Deployment, body: dict) -> bytes:
    adapter = dep.adapter
    out = dict(body)
    out["model"] = dep.target.upstream_model
    data = await fetch(ctx.state, adapter, ctx.provider, adapter.count_tokens_request(orjson.dumps(out), ctx))
    try:
        obj = orjson.loads(data)
        if not isinstance(obj.get("input_tokens"), int):
            raise ValueError
    except (ValueError, AttributeError):
        raise adapter.bad_response("no 'input_tokens' in the count") from None
    return data


async def _answer(ctx: RequestContext, send: Send, data: bytes, estimated: bool) -> None:
    extra = [*ctx.headers]
    if estimated:
        extra.append((b"x-switchyard-estimated", b"true"))
    ctx.status = 200
    ctx.done = ctx.committed = True
    await send_json(send, 200, data, ctx.request_id, extra)
