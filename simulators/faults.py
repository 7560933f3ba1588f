"""An OpenAI-compatible upstream that misbehaves on request: the behaviour is the model name.

``ok``, ``status-<code>``, ``garbage`` (200, not JSON), ``html-<code>``, ``hang`` (no headers),
``hang-stream`` (two chunks, then silence), ``cut-stream`` (two chunks, then close without
[DONE]), ``slow-stream`` (a chunk every 50 ms, 200 chunks; notices a disconnect),
``no-usage-stream`` (a proper stream without a usage chunk), ``error-event`` (an error
event mid-stream), ``retry-after`` (429 with Retry-After).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from gateway.wire.asgi import Receive, Scope, Send, answer_lifespan, read_body, send_json
from simulators.model import Simulator
from simulators.server import MAX_SIMULATED_BODY

_sim = Simulator()


def _chunk(i: int, text: str, finish: str | None = None) -> bytes:
    obj = {
        "id": "chatcmpl-f",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(obj) + b"\n\n"


class FaultUpstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.disconnects = 0
        self.attempts: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await answer_lifespan(receive, send)
        raw = await read_body(receive, MAX_SIMULATED_BODY, None)
        body = orjson.loads(raw) if raw else {}
        self.requests.append(
            {"path": scope["path"], "headers": {k.decode(): v.decode() for k, v in scope["headers"]}, "body": body}
        )
        model = body.get("model", "ok").rsplit("/", 1)[-1]  # Fireworks ids arrive as accounts/.../models/<name>
        self.attempts[model] = self.attempts.get(model, 0) + 1
        await self.behave(model, body, receive, send)

    async def behave(self, model: str, body: dict[str, Any], receive: Receive, send: Send) -> None:
        # "flaky-<n>-<tag>": 503 for the first n attempts of this name, then normal answers.
        if model.startswith("flaky-") and self.attempts[model] <= int(model.split("-")[1]):
            model = "status-503"
        if model.startswith("window-"):
            # "window-<N>-<wording>[-liar]": an upstream that enforces an N-token window (a token is a
            # word) and words its refusal like OpenAI, vLLM or Azure; a liar refuses every time. Like
            # Fireworks it honours context_length_exceeded_behavior: truncate itself.
            parts = model.split("-")
            window, wording, liar = int(parts[1]), parts[2], parts[-1] == "liar"
            prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
            budget = body.get("max_completion_tokens") or body.get("max_tokens") or 0
            native_truncate = body.get("context_length_exceeded_behavior") == "truncate" and prompt < window
            if liar or (prompt + budget > window and not native_truncate):
                return await send_json(
                    send, 400, orjson.dumps({"error": _overflow(wording, window, prompt, budget)}), "f"
                )
            model = "ok"
        if model.startswith("status-"):
            code = int(model.split("-")[1])
            err = {
                "error": {
                    "message": f"simulated {code}",
                    "type": "server_error" if code >= 500 else "invalid_request_error",
                    "param": None,
                    "code": "sim_code",
                }
            }
            return await send_json(send, code, orjson.dumps(err), "f")
        if model.startswith("html-"):
            code = int(model.split("-")[1])
            await send({"type": "http.response.start", "status": code, "headers": [(b"content-type", b"text/html")]})
            return await send({"type": "http.response.body", "body": b"<html><body>Bad Gateway</body></html>"})
        if model == "garbage":
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            return await send({"type": "http.response.body", "body": b"this is not json"})
        if model == "retry-after":
            err = {"error": {"message": "slow down", "type": "rate_limit_exceeded", "param": None, "code": None}}
            return await send_json(send, 429, orjson.dumps(err), "f", [(b"retry-after", b"1")])
        if model == "slow-json":
            for _ in range(200):  # up to 10 s, noticing a disconnect
                await asyncio.sleep(0.05)
                if await _gone(receive):
                    self.disconnects += 1
                    return
            return await send_json(send, 200, orjson.dumps(_sim.respond("chat", body)), "f")
        if model == "anthropic-garbage":
            # A Messages stream whose second event has a delta of the wrong type.
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
            )
            start = {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": "m",
                    "stop_reason": None,
                    "usage": {"input_tokens": 3, "output_tokens": 1},
                },
            }
            ev = b"event: message_start\ndata: " + orjson.dumps(start) + b"\n\n"
            ev += b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
            ev += b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":5}\n\n'
            return await send({"type": "http.response.body", "body": ev, "more_body": False})
        if model == "hang":
            await asyncio.sleep(30)
            return
        sse = [(b"content-type", b"text/event-stream")]
        if model in ("hang-stream", "cut-stream", "error-event"):
            await send({"type": "http.response.start", "status": 200, "headers": sse})
            await send({"type": "http.response.body", "body": _chunk(0, "one ") + _chunk(1, "two "), "more_body": True})
            if model == "hang-stream":
                await asyncio.sleep(30)
            if model == "error-event":
                ev = b'data: {"error": {"message": "model crashed", "type": "server_error", "code": "boom"}}\n\n'
                await send({"type": "http.response.body", "body": ev, "more_body": True})
            return await send({"type": "http.response.body", "body": b"", "more_body": False})
        if model == "slow-stream":
            await send({"type": "http.response.start", "status": 200, "headers": sse})
            for i in range(200):
                await asyncio.sleep(0.05)
                await send({"type": "http.response.body", "body": _chunk(i, f"w{i} "), "more_body": True})
                if await _gone(receive):
                    self.disconnects += 1
                    return
            return await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        if model == "no-usage-stream":
            await send({"type": "http.response.start", "status": 200, "headers": sse})
            body_bytes = _chunk(0, "a ") + _chunk(1, "b ") + _chunk(2, "c", "stop") + b"data: [DONE]\n\n"
            return await send({"type": "http.response.body", "body": body_bytes, "more_body": False})
        if body.get("stream"):
            events = b"".join(b"data: " + e + b"\n\n" for e in _sim.stream("chat", body)) + b"data: [DONE]\n\n"
            await send({"type": "http.response.start", "status": 200, "headers": sse})
            return await send({"type": "http.response.body", "body": events, "more_body": False})
        return await send_json(send, 200, orjson.dumps(_sim.respond("chat", body)), "f")


def _overflow(wording: str, window: int, prompt: int, budget: int) -> dict[str, Any]:
    if wording == "vllm":
        msg = (
            f"'max_tokens' or 'max_completion_tokens' is too large: {budget}. This model's maximum context length "
            f"is {window} tokens and your request has {prompt} input tokens ({budget} > {window} - {prompt})."
        )
        return {"message": msg, "type": "BadRequestError", "param": None, "code": 400}
    msg = (
        f"This model's maximum context length is {window} tokens. However, you requested {prompt + budget} tokens "
        f"({prompt} in the messages, {budget} in the completion). Please reduce the length of the messages or completion."
    )
    code = "context_length_exceeded" if wording == "openai" else None  # Azure: the same words, no code
    return {"message": msg, "type": "invalid_request_error", "param": "messages", "code": code}


async def _gone(receive: Receive) -> bool:
    """True when the peer has disconnected (checked without blocking for long)."""
    try:
        msg = await asyncio.wait_for(receive(), 0.001)
    except TimeoutError:
        return False
    return msg["type"] == "http.disconnect"
