"""OpenAI embeddings over Cohere's ``/v2/embed``.

``input_type`` is the client's extra field if given, else ``search_document``; Cohere is always
asked for floats, and base64 is encoded here exactly as OpenAI encodes it (little-endian float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from providers.base import apply_params, embeddings_answer
from providers.cohere import params

if TYPE_CHECKING:
    from providers.base import CallContext, Target
    from providers.cohere import CohereAdapter


@dataclass(frozen=True, slots=True)
class CohereReply:
    """What the way back needs to know of the request (``CallContext.reply``)."""

    base64: bool = False  # embeddings: encoding_format base64 (Cohere is asked for floats)


_FLOATS = CohereReply()
_BASE64 = CohereReply(base64=True)


def embed_body(adapter: CohereAdapter, body: dict[str, Any], target: Target, ctx: CallContext) -> dict[str, Any]:
    inp = body.get("input")
    texts = [inp] if isinstance(inp, str) else inp
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise adapter.unsupported("input", "Cohere embeds text, not token ids")
    ctx.reply = _BASE64 if body.get("encoding_format") == "base64" else _FLOATS
    out: dict[str, Any] = {
        "model": target.upstream_model,
        "texts": texts,
        "input_type": body.get("input_type") or "search_document",
        "embedding_types": ["float"],
    }
    apply_params(adapter, params.EMBEDDINGS, body, out)
    return out


def embeddings(adapter: CohereAdapter, obj: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    emb = obj.get("embeddings")
    vectors = emb.get("float") if isinstance(emb, dict) else emb
    if not isinstance(vectors, list):
        raise adapter.bad_response("no float embeddings")
    billed = ((obj.get("meta") or {}).get("billed_units") or {}).get("input_tokens") or 0
    return embeddings_answer(ctx, vectors, (ctx.reply or _FLOATS).base64, int(billed))
