"""Cohere's error bodies (``{"message": ...}``) -> OpenAI-shaped errors with the upstream's status kept."""

from __future__ import annotations

from typing import TYPE_CHECKING

from providers.base import STATUS_TYPES, try_json

if TYPE_CHECKING:
    from gateway.errors import GatewayError
    from providers.cohere import CohereAdapter

# Cohere answers an invalid token with its own 498.
COHERE_STATUS_TYPES = {**STATUS_TYPES, 498: "authentication_error"}


def parse_error(adapter: CohereAdapter, status: int, payload: bytes) -> GatewayError:
    err = try_json(payload)
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return adapter.upstream_error(status, err["message"], COHERE_STATUS_TYPES.get(status))
    return adapter.plain_error(status, payload)
