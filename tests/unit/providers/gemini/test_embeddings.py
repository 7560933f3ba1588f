"""GeminiAdapter's embeddings, request and response, checked against Google's own documented examples.

Each golden test names the page its Gemini-side JSON comes from. The OpenAI side is the request a
client would send for the same conversation.
"""

from __future__ import annotations

import array
import base64

import orjson
import pytest

from gateway.errors import GatewayError
from providers.base import EMBEDDINGS
from tests.unit.providers.gemini import GEMINI

adapter, build, refused = GEMINI.adapter, GEMINI.built, GEMINI.refused


# -- embeddings (golden) -----------------------------------------------------------------------


def test_golden_embed_requests():
    # https://github.com/google-gemini/cookbook/blob/main/quickstarts/rest/Embeddings_REST.ipynb
    # ("Embed content" and "Batch embed content"), with outputDimensionality from
    # https://ai.google.dev/api/embeddings#method:-models.embedcontent
    _, payload, ctx = build({"model": "x", "input": "Hello world"}, EMBEDDINGS, model="embedding-001")
    assert payload == {"model": "models/embedding-001", "content": {"parts": [{"text": "Hello world"}]}}
    questions = ["What is the meaning of life?", "How much wood would a woodchuck chuck?", "How does the brain work?"]
    _, payload, ctx = build({"model": "x", "input": questions, "dimensions": 256}, EMBEDDINGS, model="embedding-001")
    assert payload == {
        "requests": [
            {"model": "models/embedding-001", "outputDimensionality": 256, "content": {"parts": [{"text": q}]}}
            for q in questions
        ]
    }
    assert ctx.reply.inputs == 3


def test_embedding_token_inputs_and_unknown_fields_are_refused():
    refused({"model": "x", "input": [1, 2, 3]}, EMBEDDINGS, param="input")
    refused({"model": "x", "input": [[1, 2]]}, EMBEDDINGS, param="input")
    refused({"model": "x", "input": "a", "task": "search"}, EMBEDDINGS, param="task")


def test_golden_embed_responses_float_and_base64():
    # Embeddings_REST.ipynb outputs: {"embedding": {"values": [...]}} and {"embeddings": [{"values": [...]}]}.
    values = [0.04703258, -0.040190056, -0.029026963, -8.3654784e-05]
    _, _, ctx = build({"model": "x", "input": "Hello world"}, EMBEDDINGS, model="embedding-001")
    out = adapter().parse_response(EMBEDDINGS, orjson.dumps({"embedding": {"values": values}}), ctx)
    # ~4 characters a token (https://ai.google.dev/gemini-api/docs/tokens): "Hello world" is 11 chars -> 3.
    assert out == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": values}],
        "model": "gemini/embedding-001",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }
    body = {"model": "x", "input": ["a", "b"], "encoding_format": "base64"}
    _, _, ctx = build(body, EMBEDDINGS, model="embedding-001")
    batch = {"embeddings": [{"values": values}, {"values": [1.0, -2.5]}]}
    out = adapter().parse_response(EMBEDDINGS, orjson.dumps(batch), ctx)
    # Decoded exactly as the OpenAI SDK does (array('f') of the base64 bytes).
    decoded = [array.array("f", base64.b64decode(d["embedding"])).tolist() for d in out["data"]]
    assert decoded[0] == pytest.approx(values, rel=1e-6) and decoded[1] == [1.0, -2.5]
    assert base64.b64decode(out["data"][1]["embedding"]) == bytes.fromhex("0000803f000020c0")  # little-endian f32
    with pytest.raises(GatewayError) as e:
        adapter().parse_response(EMBEDDINGS, orjson.dumps({"embeddings": [{"values": values}]}), ctx)
    assert e.value.status == 502
