"""Embeddings (``POST /v1/embeddings``): never streamed, no completion budget."""

from gateway.apis.base import Endpoint
from gateway.pipeline.validate import check_embeddings
from gateway.wire.types import EMBEDDINGS

ENDPOINT = Endpoint("embeddings", ("/v1/embeddings",), check_embeddings, EMBEDDINGS, streams=False)
