"""The context-window decision: does prompt + completion budget fit the model's window?

``context_length_exceeded_behavior`` (Fireworks' parameter, accepted on every route) comes from the body or the model's configured
default. With ``truncate`` an oversized budget is lowered to what is left of the window; with
``error`` the request is refused with OpenAI's own 400 ``context_length_exceeded``. Providers that
understand the parameter (Fireworks) receive it and decide; everyone else never sees it.

Counts are exact when the model's tokenizer is known. Otherwise the gateway works with bounds:
it truncates by the upper one and refuses only what even the lower one cannot fit; the rest
goes upstream, whose own overflow error ``parse_overflow`` can read.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.errors import GatewayError
from gateway.pipeline.tokens import Bounds, Encoder, encoding, is_loaded, measure_chat, measure_text, tokenizer_for
from providers.base import overflow_numbers
from providers.registry import KINDS, capabilities

if TYPE_CHECKING:
    from gateway.pipeline.routing import ModelFacts
    from providers.base import Adapter

PARAM = "context_length_exceeded_behavior"
CHAT = "chat"
COMPLETIONS = "completions"
_BUDGET_KEYS = ("max_completion_tokens", "max_tokens")  # the first one present is the budget
_ESTIMATOR = "cl100k_base"  # what estimate_upper counts with
# Prompts with more text than this are counted in a worker thread (tiktoken releases the GIL).
_INLINE_CHARS = 32 * 1024


@dataclass(frozen=True, slots=True)
class Fit:
    prompt_tokens: int  # all prompts together; the upper bound when not exact
    exact: bool
    budget: int | None  # the completion budget after the decision; None when the client gave none


def fit(endpoint: str, body: dict[str, Any], facts: ModelFacts, kind: str, native: bool) -> Fit | None:
    """Check ``body`` against the model's window; may lower its budget in place or raise 400.

    ``native``: the provider handles the parameter itself, so it stays and nothing is checked.
    Otherwise the parameter is removed, and without a ``context_window`` nothing is checked.
    ``facts.tokenizer`` should already be ``tokenizer_for(upstream, kind, configured)``; when it
    is None the body's model name is tried, then estimates are used.
    """
    if native:
        return None
    behaviour = body.pop(PARAM, None) or facts.overflow
    window = facts.context_window
    if window is None or endpoint not in (CHAT, COMPLETIONS):
        return None
    if _surely_fits(endpoint, body, window, facts.max_output_tokens):
        return None  # nothing to decide, so nothing to tokenize (and no tokenizer to load)
    name = _tokenizer(body, facts, kind)
    enc = encoding(name) if name else None
    # Only truncation reads the upper bound; a refusal rests on the lower one alone, which is first
    # taken roughly (at least the bound): what fits by it fits, what does not is measured again.
    upper = behaviour == "truncate"
    rough = enc is None and not upper
    budget = budget_of(body)
    while True:
        prompts = list(_measure(endpoint, body, enc, upper, rough))
        longest = Bounds(max(p.low for p in prompts), max(p.high for p in prompts), False)
        try:
            new = _decide(endpoint, window, longest, budget, behaviour, facts.max_output_tokens)
        except GatewayError:
            if not rough:
                raise
            rough = False
            continue
        break
    if budget is not None and new is not None and new < budget:
        cap_budget(body, new)
    return Fit(sum(p.high for p in prompts), all(p.exact for p in prompts), new)


async def fit_async(endpoint: str, body: dict[str, Any], facts: ModelFacts, kind: str, native: bool) -> Fit | None:
    """``fit``, in a worker thread when the prompt is large or its tokenizer is not loaded yet."""
    window = facts.context_window
    if not native and window is not None and endpoint in (CHAT, COMPLETIONS):
        if _surely_fits(endpoint, body, window, facts.max_output_tokens):
            body.pop(PARAM, None)
            return None
        name = _tokenizer(body, facts, kind)
        if name is None and (body.get(PARAM) or facts.overflow) == "truncate":
            name = _ESTIMATOR  # the upper estimate counts with it
        if (name is not None and not is_loaded(name)) or _text_chars(endpoint, body) > _INLINE_CHARS:
            return await asyncio.to_thread(fit, endpoint, body, facts, kind, native)
    return fit(endpoint, body, facts, kind, native)


def _tokenizer(body: dict[str, Any], facts: ModelFacts, kind: str) -> str | None:
    if facts.tokenizer:
        return facts.tokenizer
    model = body.get("model")
    return tokenizer_for(model, kind, None) if isinstance(model, str) else None


def _decide(
    endpoint: str, window: int, prompt: Bounds, budget: int | None, behaviour: str, max_output: int | None
) -> int | None:
    """The budget to send (``budget`` itself when it fits), or raise the overflow error.

    ``prompt.low == prompt.high`` for exact counts. A request always needs room for one completion token.
    """
    low, high = prompt.low, prompt.high
    if budget is None:
        # Nothing to truncate; vLLM likewise refuses a prompt that fills the whole window.
        if low >= window:
            raise overflow_error(endpoint, window, low, None)
        return None
    if behaviour != "truncate":
        if low + budget > window:
            raise overflow_error(endpoint, window, low, budget)
        return budget
    cap = window - high if max_output is None else min(window - high, max_output)
    if budget <= cap:
        return budget
    if cap >= 1:
        return cap
    room = window - low
    if room < 1:
        raise overflow_error(endpoint, window, low, budget)
    # Only estimates get here: the prompt may fit, the gateway cannot tell. It goes upstream with
    # the most that could fit and the upstream's own overflow error settles it.
    return min(budget, room) if max_output is None else min(budget, room, max_output)


def _measure(endpoint: str, body: dict[str, Any], enc: Encoder | None, upper: bool, rough: bool) -> Iterator[Bounds]:
    if endpoint == CHAT:
        messages = body.get("messages")
        tools = body.get("tools") or body.get("functions")
        yield measure_chat(
            messages if isinstance(messages, list) else [],
            tools if isinstance(tools, list) else None,
            enc,
            body.get("response_format"),
            upper,
            rough,
        )
        return
    suffix = body.get("suffix")
    extra = measure_text(suffix, enc, upper, rough) if isinstance(suffix, str) else Bounds(0, 0, True)
    for p in _prompts(body.get("prompt")):
        b = Bounds(len(p), len(p), True) if isinstance(p, list) else measure_text(p, enc, upper, rough)
        yield Bounds(b.low + extra.low, b.high + extra.high, b.exact and extra.exact)


def _prompts(prompt: Any) -> list[str | list[Any]]:
    """Each prompt of a completions request: a string, or a token list (counted as its length)."""
    if isinstance(prompt, str):
        return [prompt]
    if not isinstance(prompt, list) or not prompt:
        return [""]
    if all(_is_int(x) for x in prompt):
        return [prompt]
    return [p if isinstance(p, str | list) else "" for p in prompt]


def budget_of(body: dict[str, Any]) -> int | None:
    """The request's completion budget: ``max_completion_tokens``, else ``max_tokens``."""
    for k in _BUDGET_KEYS:
        v = body.get(k)
        if _is_int(v):
            return v
    return None


def cap_budget(body: dict[str, Any], limit: int) -> None:
    """Lower every budget field the client set to at most ``limit``."""
    for k in _BUDGET_KEYS:
        v = body.get(k)
        if _is_int(v) and v > limit:
            body[k] = limit


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_MESSAGE_KEYS = frozenset({"role", "content", "name"})


def _surely_fits(endpoint: str, body: dict[str, Any], window: int, max_output: int | None) -> bool:
    """True when even a bound no tokenizer can exceed leaves room for the budget.

    A byte-level BPE token is at least one UTF-8 byte and a character at most four, so
    ``4 * characters`` bounds any tokenizer's count; messages add their fixed overhead. Only
    plain text qualifies (images, tools and tool calls are counted the careful way).
    """
    budget = budget_of(body)
    if max_output is not None and budget is not None and budget > max_output:
        return False  # truncate mode must still cap the budget
    if endpoint == COMPLETIONS:
        # Token-id prompts are counted exactly (their length) anyway; only text takes this path.
        prompt = body.get("prompt")
        items = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(items, list) or not all(isinstance(p, str) for p in items):
            return False
        bound = max((4 * len(p) for p in items), default=0)
    else:
        if body.get("tools") or body.get("functions"):
            return False
        messages = body.get("messages")
        if not isinstance(messages, list):
            return False
        bound = 3  # reply priming
        for m in messages:
            if not isinstance(m, dict) or not _MESSAGE_KEYS.issuperset(m):
                return False
            content = m.get("content")
            if isinstance(content, str):
                bound += 4 * len(content)
            elif isinstance(content, list):
                for part in content:
                    if (
                        not isinstance(part, dict)
                        or part.get("type") != "text"
                        or not isinstance(part.get("text"), str)
                    ):
                        return False
                    bound += 4 * len(part["text"]) + 4
            elif content is not None:
                return False
            name = m.get("name")
            bound += 8 + 4 * len(m.get("role") or "") + (4 * len(name) + 1 if isinstance(name, str) else 0)
    return bound + (budget if budget is not None else 1) <= window


def _text_chars(endpoint: str, body: dict[str, Any]) -> int:
    """Roughly how much text would be tokenized; cheap next to tokenizing it."""
    if endpoint == COMPLETIONS:
        prompt = body.get("prompt")
        items = [prompt] if isinstance(prompt, str) else prompt if isinstance(prompt, list) else []
        return sum(len(p) for p in items if isinstance(p, str))
    n = 0
    messages = body.get("messages")
    for m in messages if isinstance(messages, list) else []:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            n += len(content)
        elif isinstance(content, list):
            n += sum(len(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return n


def overflow_error(endpoint: str, window: int, prompt: int, completion: int | None) -> GatewayError:
    """OpenAI's own 400 ``context_length_exceeded`` (the chat wording, as OpenAI words it;
    ``param`` is ``prompt`` for completions)."""
    param = "prompt" if endpoint == COMPLETIONS else "messages"
    if completion is None:
        message = (
            f"This model's maximum context length is {window} tokens. However, your messages resulted in "
            f"{prompt} tokens. Please reduce the length of the messages."
        )
    else:
        message = (
            f"This model's maximum context length is {window} tokens. However, you requested "
            f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the completion). "
            "Please reduce the length of the messages or completion."
        )
    return GatewayError(400, message, type="invalid_request_error", param=param, code="context_length_exceeded")


def parse_overflow(message: str, adapter: Adapter | None = None) -> tuple[int, int, int] | None:
    """(window, prompt tokens, requested completion) from an upstream's overflow message.

    The completion is 0 when the message names none. None when the message is not a known
    wording or its numbers are not exact (or do not add up). The wordings are the providers'
    own (``Capabilities.overflow_wordings``): ``adapter``'s when given, else every kind's.
    """
    if adapter is not None:
        return adapter.parse_overflow(message)
    return overflow_numbers(_all_wordings(), message)


@functools.cache
def _all_wordings() -> tuple[re.Pattern[str], ...]:
    """Every registered kind's overflow wordings, once each, in registry order (built on first use)."""
    return tuple(dict.fromkeys(w for kind in KINDS for w in capabilities(kind).overflow_wordings))
