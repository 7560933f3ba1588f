"""OpenAI embeddings over Gemini's ``embedContent`` (one text) and ``batchEmbedContents`` (a list).

Gemini's answers carry no usage, so the prompt tokens are estimated at about 4 characters a token,
as Gemini documents (https://ai.google.dev/gemini-api/docs/tokens), and marked as an estimate.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from gateway.errors import GatewayError
from providers.base import apply_params, embeddings_answer
from providers.gemini import params
from providers.gemini.request import ONE, GeminiReply

if TYPE_CHECKING:
    from providers.base import CallContext
    from providers.gemini import GeminiAdapter

_CHARS_PER_TOKEN = 4


def embed_request(
    adapter: GeminiAdapter, body: dict[str, Any], model: str, ctx: CallContext
) -> tuple[str, dict[str, Any]]:
    """The method and body for ``model``'s embeddings of the request's text(s)."""
    apply_params(adapter, params.EMBEDDINGS, body, {})
    inp = body.get("input")
    texts = [inp] if isinstance(inp, str) else inp
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise GatewayError(
            400,
            f"Provider '{adapter.name}' (gemini) embeds text only: 'input' must be a string or an array of "
            "strings, not token ids.",
            param="input",
            code="invalid_value",
        )
    one: dict[str, Any] = {"model": f"models/{model}"}
    if body.get("dimensions") is not None:
        one["outputDimensionality"] = body["dimensions"]
    requests = [{**one, "content": {"parts": [{"text": t}]}} for t in texts]
    ctx.reply = GeminiReply(
        inputs=len(texts),
        base64=body.get("encoding_format") == "base64",
        tokens=sum(max(1, math.ceil(len(t) / _CHARS_PER_TOKEN)) for t in texts),
    )
    ctx.usage_estimated = True  # Gemini reports no usage for embeddings
    if isinstance(inp, str):
        return "embedContent", requests[0]
    return "batchEmbedContents", {"requests": requests}


def embeddings(adapter: GeminiAdapter, obj: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    if isinstance(obj.get("embeddings"), list):
        vectors = [e.get("values") if isinstance(e, dict) else None for e in obj["embeddings"]]
    elif isinstance(obj.get("embedding"), dict):
        vectors = [obj["embedding"].get("values")]
    else:
        raise adapter.bad_response("no 'embedding' or 'embeddings' in the response")
    reply = ctx.reply or ONE
    expected = len(vectors) if reply.inputs is None else reply.inputs
    if len(vectors) != expected or not all(isinstance(v, list) for v in vectors):
        raise adapter.bad_response("the embeddings do not match the inputs")
    return embeddings_answer(ctx, vectors, reply.base64, reply.tokens)
