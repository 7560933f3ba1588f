"""What a request may cost at most: the reservation a money budget takes at admission (README
"Budgets in money").

    reservation = prompt estimate x input price + completion budget x choices x output price

over the dearest of the route's deployments (a fallback may answer), with every prompt token at the
dearer of the input and cache-write prices and the long-context tier when the estimate is above it.
The completion budget is the client's (``max_completion_tokens``, ``max_tokens``,
``max_output_tokens``), else the deployment's default ``max_tokens``, else the model's output limit,
else what the context window leaves; with none of them known only the prompt is reserved. The limiter
(``limits/``) reserves it atomically and settles the real cost afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.apis.base import Endpoint
    from gateway.pipeline.routing import Deployment, Route

_NO_OUTPUT = frozenset({"embeddings"})


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def completion_budget(endpoint: Endpoint, body: dict[str, Any], dep: Deployment, prompt: int) -> int:
    """The most completion tokens one choice of this request can produce on ``dep``."""
    if endpoint.name in _NO_OUTPUT:
        return 0
    for key in ("max_completion_tokens", endpoint.overflow_param):
        v = _int(body.get(key))
        if v is not None:
            return v
    facts = dep.facts
    for v in (dep.target.default_max_tokens, facts.max_output_tokens):
        if v:
            return v
    if facts.context_window:
        return max(facts.context_window - prompt, 0)
    return 0


def choices(endpoint: Endpoint, body: dict[str, Any]) -> int:
    """Completions generated upstream and billed: ``n`` (and ``best_of`` for completions)."""
    n = _int(body.get("n")) or 1
    if endpoint.name == "completions":
        n = max(n, _int(body.get("best_of")) or 1)
    return n


def reservation(endpoint: Endpoint, body: dict[str, Any], route: Route, prompt_estimate: int) -> int:
    """Micro-dollars to reserve: the highest cost over the route's deployments (0 when none is priced)."""
    prompt = max(prompt_estimate, 0)
    n = choices(endpoint, body)
    most = 0
    for dep in route.deployments:
        pricing = dep.facts.pricing
        if pricing is None:
            continue
        completion = completion_budget(endpoint, body, dep, prompt) * n
        most = max(most, pricing.max_cost_micro(prompt, completion))
    return most
