"""Fireworks dialect: OpenAI-compatible, with Fireworks' model ids and extras.

Fireworks speaks OpenAI's wire format at ``https://api.fireworks.ai/inference/v1`` with Bearer
auth (https://docs.fireworks.ai/api-reference/post-chatcompletions,
https://docs.fireworks.ai/api-reference/post-completions). What differs:

- model ids are ``accounts/<account>/models/<name>``: a bare name gets Fireworks' public
  ``accounts/fireworks/models/`` prefix, an ``accounts/...`` id (deployments included) is kept;
- it understands ``context_length_exceeded_behavior`` itself (``truncate`` by default), so the
  gateway forwards it and does not pre-check (``native_overflow``);
- its extras pass through untouched like every field the gateway does not interpret:
  ``top_k``, ``min_p``, ``typical_p``, ``repetition_penalty``, ``mirostat_target``,
  ``mirostat_lr``, ``images`` (completions), ``response_format`` with ``schema`` or ``grammar``,
  ``prompt_cache_max_len``, ``raw_output``, ``echo``, ``ignore_eos``, ``perf_metrics_in_response``;
- usage arrives on the last streamed chunk together with its choices; ``OpenAIStream`` keeps
  that chunk's content and finish_reason and strips ``usage`` unless the client asked for it;
- stop sequences stay in the returned text, as Fireworks returns them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from providers.base import CHAT, COMPLETIONS, EMBEDDINGS, CallContext, Capabilities, Target, UpstreamRequest
from providers.openai import OpenAIAdapter

if TYPE_CHECKING:
    from gateway.config import ProviderConfig

DEFAULT_BASE_URL = "https://api.fireworks.ai/inference/v1"
_PUBLIC_MODELS = "accounts/fireworks/models/"


def fireworks_model(name: str) -> str:
    """The Fireworks model id for an upstream model name."""
    return name if "/" in name else _PUBLIC_MODELS + name


class FireworksAdapter(OpenAIAdapter):
    kind = "fireworks"
    capabilities = Capabilities(
        endpoints=frozenset({CHAT, COMPLETIONS, EMBEDDINGS}),
        native_overflow=True,
        overflow_default="truncate",  # as Fireworks itself does
        overflow_wordings=OpenAIAdapter.capabilities.overflow_wordings,
    )
    responses_default = "translate"  # Fireworks' own Responses API differs: go through chat

    def __init__(self, name: str, cfg: ProviderConfig) -> None:
        if not cfg.base_url:
            cfg = cfg.model_copy(update={"base_url": DEFAULT_BASE_URL})
        super().__init__(name, cfg)

    def build(self, endpoint: str, body: dict[str, Any], target: Target, ctx: CallContext) -> UpstreamRequest:
        fw_target = Target(fireworks_model(target.upstream_model), target.default_max_tokens)
        return super().build(endpoint, body, fw_target, ctx)
