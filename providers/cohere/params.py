"""Cohere's parameter table: each OpenAI request field and how it reaches ``/v2/chat`` or ``/v2/embed``.

``apply_params`` (providers/base.py) applies it: a null, ``{}`` or ``[]`` asks for nothing, a
field not listed is a 400 naming it, and so is a value outside a field's ``only``.
"""

from __future__ import annotations

from typing import Any

from providers.base import Param, same_list


def _p(v: Any) -> Any:
    # Cohere's p is documented in [0.01, 0.99]; OpenAI's 1.0 means "no nucleus cut".
    return min(max(v, 0.01), 0.99) if isinstance(v, int | float) and not isinstance(v, bool) else v


# Cohere's own fields a client may pass as extras; forwarded as they are.
COHERE_EXTRAS = ("safety_mode", "documents", "citation_options", "strict_tools", "thinking", "priority")

CHAT: dict[str, Param] = {
    # Mapped by the builder (request.py): model, messages (chat) or prompt (completions), tools,
    # tool_choice, response_format. stream_options is the gateway's business, user an end-user
    # tag Cohere has no field for.
    **{k: Param() for k in ("model", "messages", "prompt", "tools", "tool_choice", "response_format")},
    "stream_options": Param(),
    "user": Param(),
    "stream": Param("stream"),
    "max_tokens": Param("max_tokens"),
    "max_completion_tokens": Param("max_tokens"),
    "stop": Param("stop_sequences", same_list),
    "temperature": Param("temperature"),
    "top_p": Param("p", _p),
    "top_k": Param("k"),
    "seed": Param("seed"),
    "frequency_penalty": Param("frequency_penalty"),
    "presence_penalty": Param("presence_penalty"),
    "logprobs": Param("logprobs"),
    **{k: Param(k) for k in COHERE_EXTRAS},
    # What Cohere can honour only at OpenAI's default.
    "n": Param(only=(1,)),
    "parallel_tool_calls": Param(only=(True,)),
    "top_logprobs": Param(only=(0,)),
    "echo": Param(only=(False,)),
    "suffix": Param(only=("",)),
    "best_of": Param(only=(1,)),
    "store": Param(only=(False,)),
    "modalities": Param(only=(["text"],)),
}

COMPLETIONS: dict[str, Param] = {
    **CHAT,
    "logprobs": Param(only=(), why="Cohere returns no alternatives for legacy completions"),
}

EMBEDDINGS: dict[str, Param] = {
    # model, input, input_type and encoding_format by the builder (embeddings.py)
    **{k: Param() for k in ("model", "input", "input_type", "encoding_format", "user")},
    "dimensions": Param("output_dimension"),
    "truncate": Param("truncate"),
}
