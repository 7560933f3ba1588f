"""The Cohere v2 embeddings, request and response, checked against Cohere's own documented examples.

Golden source: https://docs.cohere.com/reference/embed, the v2 embed request/response.
"""

from __future__ import annotations

import base64
import struct

import orjson
import pytest

from gateway.errors import GatewayError
from providers.base import EMBEDDINGS, Target
from tests.unit.providers.cohere import COHERE

adapter, ctx = COHERE.adapter, COHERE.ctx


# -- embeddings -------------------------------------------------------------------------------


def test_golden_embed_request():
    # https://docs.cohere.com/reference/embed: texts, model, input_type, embedding_types.
    c = ctx()
    req = adapter().build_request(
        EMBEDDINGS,
        {
            "model": "cohere/embed-v4.0",
            "input": ["hello", "goodbye"],
            "input_type": "classification",
            "dimensions": 256,
        },
        Target("embed-v4.0"),
        c,
    )
    assert req.url == "https://api.cohere.com/v2/embed"
    assert orjson.loads(req.body) == {
        "model": "embed-v4.0",
        "texts": ["hello", "goodbye"],
        "input_type": "classification",
        "embedding_types": ["float"],
        "output_dimension": 256,
    }
    default = adapter().build_request(EMBEDDINGS, {"model": "m", "input": "x"}, Target("embed-v4.0"), ctx())
    assert orjson.loads(default.body)["input_type"] == "search_document"
    assert orjson.loads(default.body)["texts"] == ["x"]


def test_embed_refuses_token_input_and_unknown_fields():
    for body, param in (({"input": [[1, 2]]}, "input"), ({"input": "x", "foo": 1}, "foo")):
        with pytest.raises(GatewayError) as e:
            adapter().build_request(EMBEDDINGS, {"model": "m", **body}, Target("e"), ctx())
        assert e.value.param == param


EMBED_RESPONSE = {
    "id": "da6e531f-7ec6-4b93-8ed2-b2ea6a7c5f79",
    "embeddings": {"float": [[0.016296387, -0.008354187, -0.04699707], [-0.02960205, 0.0074768066, -0.038757324]]},
    "texts": ["hello", "goodbye"],
    "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 2}},
    "response_type": "embeddings_by_type",
}


@pytest.mark.parametrize("fmt", ["float", "base64"])
def test_embed_response(fmt):
    c = ctx()
    a = adapter()
    a.build_request(EMBEDDINGS, {"model": "m", "input": ["hello", "goodbye"], "encoding_format": fmt}, Target("e"), c)
    out = a.parse_response(EMBEDDINGS, orjson.dumps(EMBED_RESPONSE), c)
    assert out["object"] == "list" and out["model"] == "cohere/command-a-03-2025"
    assert out["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    vectors = EMBED_RESPONSE["embeddings"]["float"]
    for i, item in enumerate(out["data"]):
        assert item["object"] == "embedding" and item["index"] == i
        if fmt == "float":
            assert item["embedding"] == vectors[i]
        else:
            # OpenAI's base64 is little-endian float32, so this is how its SDK decodes it.
            raw = base64.b64decode(item["embedding"])
            assert raw == struct.pack("<3f", *vectors[i])
            assert struct.unpack("<3f", raw) == pytest.approx(vectors[i], rel=1e-6)
