"""Provider adapters: one dialect per module, pure translation with no I/O."""

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
    "bedrock": "providers.bedrock:BedrockAdapter",
}


def make_adapter(name: str, cfg: ProviderConfig) -> Adapter:
    """Build the adapter for the provider named ``name`` (the vendor prefix)."""
    module, cls = ADAPTERS[cfg.kind].split(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise NotImplementedError(f"provider kind '{cfg.kind}' is not available in this build") from None
        raise
    return getattr(mod, cls)(name, cfg)
