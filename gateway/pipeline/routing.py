"""``vendor/model`` or an alias -> an ordered list of deployments, each with its model facts.

Configured names are precomputed at start-up; a passthrough ``vendor/x`` is built once
and cached (bounded), so the request path does one dict lookup.

A deployment's facts (context window, output limit, tokenizer, prices) are its ``models:`` entry's,
field by field, and the model catalog's (``governance/catalog.py``) for whatever the entry leaves
out, so ``openai/gpt-4o`` has its window and prices with no config at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import Config, ModelConfig, PricingConfig, ProviderConfig
from gateway.errors import model_not_found
from gateway.governance.catalog import Catalog, Entry, load_catalog
from gateway.governance.cost import Pricing, Rates
from gateway.pipeline.tokens import tokenizer_for
from providers.base import Adapter, Target
from providers.registry import make_adapter

_PASSTHROUGH_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class ModelFacts:
    context_window: int | None = None
    max_output_tokens: int | None = None
    tokenizer: str | None = None
    overflow: str = "error"  # resolved context_length_exceeded_behavior default
    pricing: Pricing | None = None  # None: no price known (requests are recorded unpriced)
    catalog: Entry | None = None  # the catalog row the facts were completed from


@dataclass(frozen=True, slots=True)
class Deployment:
    provider: str  # the providers-map key (the metrics' ``vendor``)
    adapter: Adapter
    target: Target
    facts: ModelFacts
    weight: float = 1.0
    rank: int = 0


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # the client-facing model name
    deployments: tuple[Deployment, ...]
    configured: bool  # a ``models:`` entry (its name may be a metrics label as is)
    least_in_flight: bool = False


def _overflow(model: ModelConfig | None, provider: ProviderConfig, adapter: Adapter) -> str:
    if model is not None and model.context_length_exceeded_behavior:
        return model.context_length_exceeded_behavior
    if provider.context_length_exceeded_behavior:
        return provider.context_length_exceeded_behavior
    return adapter.capabilities.overflow_default


def merge_pricing(row: Entry | None, configured: PricingConfig | None) -> Pricing | None:
    """The catalog's prices with every configured one replacing the catalog's. A configured price
    drops the catalog's long-context tier: the config then says what the model costs."""
    base = row.pricing if row is not None else None
    if configured is None:
        return base
    over = Rates.from_usd(configured.model_dump())
    merged = over if base is None else base.base.merged(over)
    return Pricing(merged) if merged.input is not None or merged.output is not None else None


def _has_facts(m: ModelConfig) -> bool:
    return bool(m.context_window or m.tokenizer or m.max_output_tokens or m.pricing)


class Router:
    def __init__(self, cfg: Config, catalog: Catalog | None = None) -> None:
        self.cfg = cfg
        self.catalog = catalog if catalog is not None else load_catalog()
        self.adapters: dict[str, Adapter] = {name: make_adapter(name, p) for name, p in cfg.providers.items()}
        self._by_name = {m.name: m for m in cfg.models}
        self.routes: dict[str, Route] = {}
        for m in cfg.models:
            self.routes[m.name] = self._configured(m)
        self._passthrough: dict[str, Route] = {}

    def _deployment(
        self, provider: str, upstream: str, facts_from: ModelConfig | None, weight: float, rank: int
    ) -> Deployment:
        pcfg = self.cfg.providers[provider]
        f = facts_from
        row = self.catalog.lookup(pcfg.kind, upstream)
        facts = ModelFacts(
            context_window=(f.context_window if f else None) or (row.context_window if row else None),
            max_output_tokens=(f.max_output_tokens if f else None) or (row.max_output_tokens if row else None),
            tokenizer=tokenizer_for(
                upstream, pcfg.kind, (f.tokenizer if f else None) or (row.tokenizer if row else None)
            ),
            overflow=_overflow(f, pcfg, self.adapters[provider]),
            pricing=merge_pricing(row, f.pricing if f else None),
            catalog=row,
        )
        target = Target(
            upstream_model=upstream, default_max_tokens=(f.default_max_tokens or f.max_output_tokens) if f else None
        )
        return Deployment(provider, self.adapters[provider], target, facts, weight, rank)

    def _configured(self, m: ModelConfig) -> Route:
        if m.deployments is None:
            vendor, rest = m.name.split("/", 1)
            dep = self._deployment(vendor, m.upstream or rest, m, 1.0, 0)
            return Route(m.name, (dep,), True)
        deps = []
        for i, d in enumerate(m.deployments):
            # An alias's own facts win; else those of the deployment's own models: entry.
            own = self._by_name.get(f"{d.provider}/{d.upstream}")
            facts_from = m if _has_facts(m) else own
            deps.append(
                self._deployment(d.provider, d.upstream, facts_from or m, d.weight, d.rank if d.rank is not None else i)
            )
        deps.sort(key=lambda x: x.rank)
        return Route(m.name, tuple(deps), True, m.strategy == "least_in_flight")

    def resolve(self, model: str) -> Route:
        route = self.routes.get(model) or self._passthrough.get(model)
        if route is not None:
            return route
        vendor, sep, rest = model.partition("/")
        if not sep or not rest or vendor not in self.adapters:
            raise model_not_found(model)
        route = Route(model, (self._deployment(vendor, rest, None, 1.0, 0),), False)
        if len(self._passthrough) >= _PASSTHROUGH_CACHE_MAX:
            self._passthrough.clear()
        self._passthrough[model] = route
        return route
