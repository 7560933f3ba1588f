"""Gemini's parameter table: each OpenAI request field and how it reaches ``generateContent``
(https://ai.google.dev/api/generate-content).

``apply_params`` (providers/base.py) applies it: a null, ``{}`` or ``[]`` asks for nothing, a
field not listed is a 400 naming it, and so is a value outside a field's ``only``. Fields with
no ``to`` are read by the builder (request.py), or carry nothing Gemini needs (the URL or the
gateway carries model, stream, stream_options; user cannot change the output).
"""

from __future__ import annotations

from typing import Any

from providers.base import Param, only_true, same_list


def _nonzero(v: Any) -> Any:
    return v or None


_COMMON: dict[str, Param] = {
    **{k: Param() for k in ("model", "stream", "stream_options", "user")},
    "max_tokens": Param(),  # -> maxOutputTokens unless max_completion_tokens is given (request.py)
    "response_format": Param(),  # -> responseMimeType / responseJsonSchema (request.py)
    "temperature": Param("generationConfig.temperature"),
    "top_p": Param("generationConfig.topP"),
    "top_k": Param("generationConfig.topK"),
    "n": Param("generationConfig.candidateCount"),
    "presence_penalty": Param("generationConfig.presencePenalty"),
    "frequency_penalty": Param("generationConfig.frequencyPenalty"),
    "seed": Param("generationConfig.seed"),
    "stop": Param("generationConfig.stopSequences", same_list),
}

CHAT: dict[str, Param] = {
    **_COMMON,
    **{k: Param() for k in ("messages", "tools", "tool_choice")},  # request.py
    "max_completion_tokens": Param("generationConfig.maxOutputTokens"),
    "logprobs": Param("generationConfig.responseLogprobs", only_true),
    "top_logprobs": Param("generationConfig.logprobs", _nonzero),
    "parallel_tool_calls": Param(only=(True,), why="Gemini cannot be limited to one call per turn"),
    "store": Param(only=(False,), why="Gemini does not store completions"),
}

COMPLETIONS: dict[str, Param] = {
    **_COMMON,
    # prompt (one string) and Fireworks-style images -> one user turn; logprobs ->
    # responseLogprobs plus logprobs alternatives (request.py)
    **{k: Param() for k in ("prompt", "images", "logprobs")},
    "best_of": Param(only=(1,), why="Gemini returns every candidate it generates"),
}

EMBEDDINGS: dict[str, Param] = {k: Param() for k in ("model", "input", "encoding_format", "dimensions", "user")}
