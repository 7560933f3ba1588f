"""Anthropic's parameter table: each OpenAI request field and how it reaches ``POST /v1/messages``.

``apply_params`` (providers/base.py) applies it: a null, ``{}`` or ``[]`` asks for nothing, a
field not listed is a 400 naming it ("it has no equivalent in Anthropic's Messages API"), and so
is a value outside a field's ``only``. Fields with no ``to`` are written by request.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.errors import invalid
from providers.base import Param, only_true, same_list


def _user_id(param: str) -> Callable[[Any], Any]:
    def user_id(value: Any) -> Any:
        if not isinstance(value, str):
            raise invalid(f"Invalid type for '{param}': expected a string.", param, "invalid_type")
        return value

    return user_id


_SERVICE_TIERS = {"auto": "auto", "default": "standard_only"}
_NO_LOGPROBS = "Anthropic does not return log probabilities"

# OpenAI field -> Anthropic (applied by ``apply_params``: null, {} and [] ask for nothing; a field
# not listed, or a value outside ``only``, is a 400 naming it). No ``to``: the builder's own.
CHAT: dict[str, Param] = {
    "model": Param(),  # -> model = target.upstream_model
    "messages": Param(),  # -> system + messages (request.py)
    "max_completion_tokens": Param(),  # -> max_tokens (request.py)
    "max_tokens": Param(),  # -> max_tokens
    "tools": Param(),  # -> tools [{name, description, input_schema, strict}] (request.py)
    "tool_choice": Param(),  # none/auto/required/{function} -> none/auto/any/{type: tool, name}
    "parallel_tool_calls": Param(),  # false -> tool_choice.disable_parallel_tool_use
    "response_format": Param(),  # json_schema -> output_config.format; json_object -> forced tool
    "temperature": Param(),  # -> temperature, 0..1 on Anthropic (request.py)
    "stream_options": Param(),  # the gateway's: usage comes from message_start/message_delta
    "context_length_exceeded_behavior": Param(),  # the gateway's own, never forwarded
    "stream": Param("stream", only_true),
    "top_p": Param("top_p"),
    "top_k": Param("top_k"),  # Anthropic's own sampling knob
    "stop": Param("stop_sequences", same_list),
    "user": Param("metadata.user_id", _user_id("user")),
    "safety_identifier": Param("metadata.user_id", _user_id("safety_identifier")),  # OpenAI's successor of user
    "service_tier": Param(
        "service_tier",
        _SERVICE_TIERS.__getitem__,
        only=tuple(_SERVICE_TIERS),
        why="Anthropic offers 'auto' and 'default' (standard capacity only)",
    ),
    "n": Param(only=(1,), why="Anthropic returns one choice per request"),
    "logprobs": Param(only=(False,), why=_NO_LOGPROBS),
    "top_logprobs": Param(only=(0,), why=_NO_LOGPROBS),
    "logit_bias": Param(only=(), why="Anthropic has no logit bias"),
    "presence_penalty": Param(only=(0,), why="Anthropic has no presence penalty"),
    "frequency_penalty": Param(only=(0,), why="Anthropic has no frequency penalty"),
    "seed": Param(only=(), why="Anthropic has no seed, so answers cannot be made reproducible"),
    "audio": Param(only=(), why="Anthropic models do not produce audio"),
    "modalities": Param(only=(["text"],), why="Anthropic models produce text only"),
    "store": Param(only=(False,), why="Anthropic does not store completions"),
    "metadata": Param(only=(), why="Anthropic's metadata holds only a user id; send 'user'"),
    "reasoning_effort": Param(only=(), why="extended thinking cannot be expressed through the OpenAI chat API"),
    "verbosity": Param(only=(), why="Anthropic has no verbosity setting"),
    "prediction": Param(only=(), why="Anthropic has no predicted outputs"),
    "web_search_options": Param(only=(), why="use a model of a provider with OpenAI's web search"),
    "prompt_cache_key": Param(only=(), why="Anthropic caches by cache_control breakpoints, not by key"),
    "functions": Param(only=(), why="deprecated by OpenAI; send 'tools'"),
    "function_call": Param(only=(), why="deprecated by OpenAI; send 'tool_choice'"),
}

_SHARED = (
    "model",
    "max_tokens",
    "response_format",
    "temperature",
    "stream",
    "stream_options",
    "context_length_exceeded_behavior",
    "top_p",
    "top_k",
    "stop",
    "user",
    "n",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "seed",
)
COMPLETIONS: dict[str, Param] = {
    **{k: CHAT[k] for k in _SHARED},
    "prompt": Param(),  # one string (or a list of one) -> one user message (request.py)
    "echo": Param(only=(False,), why="Anthropic cannot echo the prompt"),
    "logprobs": Param(only=(), why=_NO_LOGPROBS),
    "suffix": Param(only=("",), why="Anthropic has no insertion (suffix) mode"),
    "best_of": Param(only=(1,), why="Anthropic returns one completion per request"),
    "images": Param(only=(), why="send images through /v1/chat/completions as image_url parts"),
}
