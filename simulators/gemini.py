"""The simulated Gemini upstream (``MockUpstream("gemini")``), written apart from providers/gemini/.

It serves ``/v1beta/models/{model}:generateContent``, ``:streamGenerateContent?alt=sse``,
``:embedContent`` and ``:batchEmbedContents`` in Google's shapes
(https://ai.google.dev/api/generate-content, https://ai.google.dev/api/embeddings), with text
from the shared Simulator. It is stricter than Google where a gateway bug could hide:

- the key must come in ``x-goog-api-key``; a ``key=`` query parameter is refused (401), so a
  key leaking into a URL fails the tests;
- streams need ``alt=sse`` and use CRLF framing, as Google's do;
- with tools declared, a user turn is answered with a ``functionCall`` carrying a
  ``thoughtSignature``, and a replayed ``functionCall`` without it is refused with the 400
  Gemini 3 gives (https://ai.google.dev/gemini-api/docs/thought-signatures). The function is the
  one the last user text names, else the first allowed; its ``args`` satisfy its schema
  (``simulators/play.py``). With ``responseMimeType: application/json`` the answer is JSON valid
  for ``responseJsonSchema`` (or ``responseSchema``).

Prompts containing ``[[block]]`` are blocked (``promptFeedback.blockReason``) and streams of
prompts containing ``[[stream-error]]`` send an error frame after their first chunk.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from gateway.wire.asgi import Scope, Send, send_json
from simulators import play
from simulators.bounds import MockError, check_embedding
from simulators.model import count_tokens, embed

if TYPE_CHECKING:
    from simulators.server import MockUpstream

_ROUTE = re.compile(r"/v1beta/models/([^/:]+):(generateContent|streamGenerateContent|embedContent|batchEmbedContents)")
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS"}
DEFAULT_DIMENSIONS = 768
SIGNATURE_PREFIX = "mock-signature-"


def _error(code: int, status: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, "status": status}})


async def handle(up: MockUpstream, scope: Scope, body: dict[str, Any], send: Send) -> None:
    m = _ROUTE.fullmatch(scope["path"])
    if m is None or scope["method"] != "POST":
        return await send_json(send, 404, _error(404, "NOT_FOUND", f"Unknown path {scope['path']}"), "mock")
    query = parse_qs(scope.get("query_string", b"").decode())
    headers = {k.lower(): v for k, v in scope["headers"]}
    if "key" in query:
        msg = "The API key was sent in the URL; it belongs in the x-goog-api-key header."
        return await send_json(send, 401, _error(401, "UNAUTHENTICATED", msg), "mock")
    if not headers.get(b"x-goog-api-key"):
        msg = "Method doesn't allow unregistered callers. Please use API Key or other form of API consumer identity."
        return await send_json(send, 403, _error(403, "PERMISSION_DENIED", msg), "mock")
    model, method = m.group(1), m.group(2)
    if method in ("embedContent", "batchEmbedContents"):
        status, payload = _embed(model, method, body)
        return await send_json(send, status, orjson.dumps(payload), "mock")
    problem = _check_generate(body)
    if problem:
        return await send_json(send, 400, _error(400, "INVALID_ARGUMENT", problem), "mock")
    frames = _generate(up, model, body)
    if method == "generateContent":
        return await send_json(send, 200, orjson.dumps(_merge(frames)), "mock")
    if query.get("alt") != ["sse"]:
        return await send_json(
            send, 400, _error(400, "INVALID_ARGUMENT", "this mock streams only with alt=sse"), "mock"
        )
    await _stream(up, send, frames, "[[stream-error]]" in _last_user_text(body))


async def _stream(up: MockUpstream, send: Send, frames: list[dict[str, Any]], fail: bool) -> None:
    if fail:  # one good frame, then Google's error object, then the end
        frames = [*frames[:1], orjson.loads(_error(500, "INTERNAL", "An internal error has occurred."))]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for frame in frames:
        if up.chunk_delay:
            await asyncio.sleep(up.chunk_delay)
        # Google frames its SSE events with CRLF (see the cookbook's Streaming_REST.ipynb output).
        body = b"data: " + orjson.dumps(frame) + b"\r\n\r\n"
        await send({"type": "http.response.body", "body": body, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


# -- generateContent ---------------------------------------------------------------------------


def _check_generate(body: dict[str, Any]) -> str | None:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for i, c in enumerate(contents):
        if not isinstance(c, dict) or c.get("role") not in ("user", "model") or not c.get("parts"):
            return f"* GenerateContentRequest.contents[{i}]: a content needs a role (user or model) and parts"
        for j, p in enumerate(c["parts"]):
            if "functionCall" in p and not str(p.get("thoughtSignature", "")).startswith(SIGNATURE_PREFIX):
                return (
                    f"Function call is missing a thought_signature in functionCall parts. Additional data, "
                    f"function call `{p['functionCall'].get('name')}`, position {j + 1}."
                )
    return None


def _text_of(content: dict[str, Any]) -> str:
    out = []
    for p in content.get("parts") or []:
        if isinstance(p.get("text"), str):
            out.append(p["text"])
        elif isinstance(p.get("functionResponse"), dict):
            out.append(orjson.dumps(p["functionResponse"].get("response")).decode())
    return " ".join(out)


def _last_user_text(body: dict[str, Any]) -> str:
    return next((_text_of(c) for c in reversed(body.get("contents") or []) if c.get("role") == "user"), "")


def _generate(up: MockUpstream, model: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer as stream frames (a whole answer is the frames merged)."""
    contents = body["contents"]
    system = body.get("systemInstruction") or {}
    prompt_tokens = count_tokens(_text_of(system)) + sum(count_tokens(_text_of(c)) for c in contents)
    base = {"modelVersion": model, "responseId": "mock-" + hashlib.sha1(orjson.dumps(body)).hexdigest()[:16]}
    if "[[block]]" in _last_user_text(body):
        usage = {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}
        return [{**base, "promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage}]
    cfg = body.get("generationConfig") or {}
    n = cfg.get("candidateCount") or 1
    call = _function_call(body)
    if call is not None:
        outs = [([], "STOP", call)] * n
    else:
        sim_body: dict[str, Any] = {"messages": [{"role": "user", "content": _last_user_text(body)}], "n": n}
        sim_body.update(max_tokens=cfg.get("maxOutputTokens"), stop=cfg.get("stopSequences"))
        if cfg.get("responseMimeType") == "application/json":
            schema = cfg.get("responseJsonSchema") or cfg.get("responseSchema")
            sim_body["response_format"] = {"type": "json_schema", "json_schema": {"schema": schema}}
        sims, _ = up.sim.chat(sim_body)
        outs = [(pieces, _FINISH[finish], None) for pieces, finish in sims]
    # Each candidate's parts, one per frame: its text pieces, or its one function call.
    parts_of = [[{"text": p} for p in pieces] or [fc or {"text": ""}] for pieces, _, fc in outs]
    frames = []
    emitted = 0  # the simulator's tokens: one per piece
    for k in range(max(len(parts) for parts in parts_of)):
        cands = []
        for i, parts in enumerate(parts_of):
            if k >= len(parts):
                continue
            cand: dict[str, Any] = {"content": {"parts": [parts[k]], "role": "model"}, "index": i}
            if cfg.get("responseLogprobs") and "text" in parts[k]:
                cand["logprobsResult"] = _logprobs(parts[k]["text"], cfg.get("logprobs") or 0)
            if k == len(parts) - 1:
                cand["finishReason"] = outs[i][1]
            emitted += 1
            cands.append(cand)
        usage = {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": emitted,
            "totalTokenCount": prompt_tokens + emitted,
        }
        frames.append({**base, "candidates": cands, "usageMetadata": usage})
    return frames


def _function_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """With tools declared and allowed, a user text turn gets a call to the first allowed function."""
    decls = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
    fcc = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    last = body["contents"][-1]
    if not decls or fcc.get("mode") == "NONE" or any("functionResponse" in p for p in last["parts"]):
        return None
    allowed = fcc.get("allowedFunctionNames")
    tools = [
        play.Tool(str(d.get("name")), d.get("parametersJsonSchema") or d.get("parameters") or {})
        for d in decls
        if not allowed or d.get("name") in allowed
    ] or [play.Tool(str(decls[0].get("name")), decls[0].get("parametersJsonSchema") or {})]
    text = _last_user_text(body)
    tool = play.choose_tool(tools, text, eager=True)  # this upstream calls whenever it may
    assert tool is not None
    signature = SIGNATURE_PREFIX + hashlib.sha1(text.encode()).hexdigest()[:12]
    return {"functionCall": {"name": tool.name, "args": play.arguments(tool, text)}, "thoughtSignature": signature}


def _logprobs(token: str, top: int) -> dict[str, Any]:
    chosen = {"token": token, "logProbability": -0.01}
    alts = [chosen] + [{"token": f"alt{k}", "logProbability": -5.0 - k} for k in range(max(top - 1, 0))]
    return {"topCandidates": [{"candidates": alts[:top]}], "chosenCandidates": [chosen]}


def _merge(frames: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-streamed answer: every candidate's parts joined, the last frame's usage."""
    merged: dict[int, dict[str, Any]] = {}
    for frame in frames:
        for cand in frame.get("candidates", []):
            into = merged.setdefault(cand["index"], {"content": {"parts": [], "role": "model"}, "index": cand["index"]})
            parts = into["content"]["parts"]
            for p in cand["content"]["parts"]:
                if "text" in p and parts and "text" in parts[-1]:
                    parts[-1] = {"text": parts[-1]["text"] + p["text"]}
                else:
                    parts.append(p)
            if "logprobsResult" in cand:
                lp = into.setdefault("logprobsResult", {"topCandidates": [], "chosenCandidates": []})
                for key in ("topCandidates", "chosenCandidates"):
                    lp[key].extend(cand["logprobsResult"][key])
            if "finishReason" in cand:
                into["finishReason"] = cand["finishReason"]
    out = {k: v for k, v in frames[-1].items() if k != "candidates"}
    if merged:
        out["candidates"] = [merged[i] for i in sorted(merged)]
    return out


# -- embeddings --------------------------------------------------------------------------------


def _embed(model: str, method: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    requests = body.get("requests") if method == "batchEmbedContents" else [body]
    if not isinstance(requests, list) or not requests:
        return 400, orjson.loads(_error(400, "INVALID_ARGUMENT", "* BatchEmbedContentsRequest.requests: missing"))
    vectors = []
    for i, req in enumerate(requests):
        if req.get("model") != f"models/{model}":
            msg = f"* requests[{i}].model: must be models/{model}, got {req.get('model')!r}"
            return 400, orjson.loads(_error(400, "INVALID_ARGUMENT", msg))
        text = _text_of(req.get("content") or {})
        try:
            check_embedding(len(requests), req.get("outputDimensionality") or DEFAULT_DIMENSIONS)
            vectors.append({"values": embed(text, req.get("outputDimensionality") or DEFAULT_DIMENSIONS)})
        except MockError as e:  # a size beyond the simulator's bounds
            return 400, orjson.loads(_error(400, "INVALID_ARGUMENT", e.message))
    if method == "embedContent":
        return 200, {"embedding": vectors[0]}
    return 200, {"embeddings": vectors}
