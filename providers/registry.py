"""The provider registry: ``kind`` -> adapter class, imported on first use.

A new dialect is one module (or folder) in ``providers/`` and one line here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import ProviderConfig
    from providers.base import Adapter

# kind -> "module:Class"; imported on first use so an unused dialect costs nothing.
ADAPTERS = {
    "openai": "providers.openai:OpenAIAdapter",
    "mock": "providers.mock:MockAdapter",
    "azure": "providers.azure:AzureAdapter",
    "fireworks": "providers.fireworks:FireworksAdapter",
    "anthropic": "providers.anthropic:AnthropicAdapter",
    "gemini": "providers.gemini:GeminiAdapter",
    "cohere": "providers.cohere:CohereAdapter",
}
KINDS = tuple(ADAPTERS)


def adapter_class(kind: str) -> type[Adapter]:
    module, cls = ADAPTERS[kind].split(":")
    return getattr(importlib.import_module(module), cls)


def make_adapter(name: str, cfg: ProviderConfig) -> Adapter:
    """Build the adapter for the provider named ``name`` (the vendor prefix)."""
    return adapter_class(cfg.kind)(name, cfg)
