"""The provider registry: ``kind`` -> adapter class, imported on first use.

A new dialect is one module (or folder) in ``providers/`` and one line here. The gateway asks
the registry which kinds exist (config), and a kind's ``Capabilities`` (files API, base_url,
tokenizer family, overflow wordings) instead of naming kinds itself.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import ProviderConfig
    from providers.base import Adapter, Capabilities

# kind -> "module:Class"; imported on first use so an unused dialect costs nothing.
ADAPTERS = {
    "openai": "providers.openai:OpenAIAdapter",
    "azure": "providers.azure:AzureAdapter",
    "fireworks": "providers.fireworks:FireworksAdapter",
    "anthropic": "providers.anthropic:AnthropicAdapter",
    "gemini": "providers.gemini:GeminiAdapter",
    "cohere": "providers.cohere:CohereAdapter",
    "mock": "providers.mock:MockAdapter",
}
KINDS = tuple(ADAPTERS)
# Kinds the design names but this version does not implement: the config refuses them by name.
RESERVED_KINDS = ("bedrock",)


def adapter_class(kind: str) -> type[Adapter]:
    module, cls = ADAPTERS[kind].split(":")
    return getattr(importlib.import_module(module), cls)


@functools.cache
def capabilities(kind: str) -> Capabilities:
    """What the adapter of ``kind`` declares (imports that one dialect, once)."""
    return adapter_class(kind).capabilities


def kinds_with(flag: str) -> tuple[str, ...]:
    """The kinds whose ``Capabilities`` have ``flag`` set (e.g. ``"files"``), in registry order."""
    return tuple(k for k in KINDS if getattr(capabilities(k), flag))


def make_adapter(name: str, cfg: ProviderConfig) -> Adapter:
    """Build the adapter for the provider named ``name`` (the vendor prefix)."""
    return adapter_class(cfg.kind)(name, cfg)
