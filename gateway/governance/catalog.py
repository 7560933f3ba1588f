"""The model catalog: facts and list prices of well-known models, shipped as data (README "Model catalog, cost and budgets").

``gateway/data/catalog.yaml`` is read once per process (never fetched): one row per model and
provider family with its context window, output limit, tokenizer and prices, each with the page
it was read from and the day it was checked. A deployment finds its row by the provider's
``kind`` and its upstream model name; matching tolerates vendor and path prefixes
(``openai/gpt-4o``, ``accounts/fireworks/models/…``, ``models/gemini-…``), a LoRA suffix
(``…:adapter``), case, and dated or versioned suffixes (``gpt-4o-2024-08-06``,
``claude-sonnet-4-5-20250929``, ``gpt-4-0613``, ``gemini-2.0-flash-001``, ``…-latest``). An exact
name always wins over a stripped one, so a dated snapshot with its own price
(``gpt-4o-2024-05-13``) keeps it.

The config's ``models:`` entries override any fact, field by field (``routing.py`` merges).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.governance.cost import PRICE_FIELDS, Pricing, Rates, to_pico

CATALOG_PATH = Path(__file__).resolve().parent.parent / "data" / "catalog.yaml"

# Provider kinds (config ``kind``) -> catalog family. The mock has no list prices.
FAMILIES = {
    "openai": "openai",
    "azure": "azure",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "cohere": "cohere",
    "fireworks": "fireworks",
}
MODES = ("chat", "embedding")
TOKENIZERS = ("o200k_base", "cl100k_base")
_ROW_FIELDS = frozenset(
    {
        "provider",
        "id",
        "aliases",
        "mode",
        "context_window",
        "max_output_tokens",
        "tokenizer",
        "pricing",
        "long_context",
        "source",
        "date",
    }
)
# Tried in order, one at a time, after the exact name: each strips one suffix.
_SUFFIXES = (
    re.compile(r"-latest$"),
    re.compile(r"-\d{4}-\d{2}-\d{2}$"),  # gpt-4o-2024-08-06
    re.compile(r"-\d{8}$"),  # claude-sonnet-4-5-20250929
    re.compile(r"-\d{2}-\d{4}$"),  # command-a-03-2025
    re.compile(r"-\d{4}$"),  # gpt-4-0613, gpt-3.5-turbo-0125
    re.compile(r"-\d{3}$"),  # gemini-2.0-flash-001
)
_LOOKUP_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Entry:
    """One catalog row."""

    provider: str
    id: str
    mode: str
    context_window: int | None
    max_output_tokens: int | None
    tokenizer: str | None
    pricing: Pricing | None
    source: str
    date: str
    aliases: tuple[str, ...] = ()


class CatalogError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def validate(data: Any) -> list[str]:
    """Every problem of a parsed catalog file as ``models.N.field: message`` (the schema)."""
    if not isinstance(data, dict):
        return ["(root): must be a mapping with a 'models' list"]
    problems: list[str] = []
    if not _is_date(data.get("date")):
        problems.append("date: must be a YYYY-MM-DD string")
    rows = data.get("models")
    if not isinstance(rows, list) or not rows:
        return [*problems, "models: must be a non-empty list"]
    seen: set[tuple[str, str]] = set()
    for i, row in enumerate(rows):
        at = f"models.{i}"
        if not isinstance(row, dict):
            problems.append(f"{at}: must be a mapping")
            continue
        for k in sorted(set(row) - _ROW_FIELDS):
            problems.append(f"{at}.{k}: unknown field")
        if row.get("provider") not in FAMILIES.values():
            problems.append(f"{at}.provider: must be one of {sorted(set(FAMILIES.values()))}")
        mid = row.get("id")
        if not isinstance(mid, str) or not mid or mid != mid.lower() or "/" in mid:
            problems.append(f"{at}.id: must be a lower-case model name without '/'")
        aliases = row.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a == a.lower() for a in aliases):
            problems.append(f"{at}.aliases: must be a list of lower-case names")
            aliases = []
        for name in [mid, *aliases]:
            key = (str(row.get("provider")), str(name))
            if key in seen:
                problems.append(f"{at}: '{name}' is listed twice for {key[0]}")
            seen.add(key)
        if row.get("mode", "chat") not in MODES:
            problems.append(f"{at}.mode: must be one of {list(MODES)}")
        for f in ("context_window", "max_output_tokens"):
            v = row.get(f)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                problems.append(f"{at}.{f}: must be a whole number >= 1")
        if row.get("tokenizer") is not None and row.get("tokenizer") not in TOKENIZERS:
            problems.append(f"{at}.tokenizer: must be one of {list(TOKENIZERS)}")
        src = row.get("source")
        if not isinstance(src, str) or not src.startswith("https://"):
            problems.append(f"{at}.source: must be the https:// URL of the provider's page")
        if not _is_date(row.get("date")):
            problems.append(f"{at}.date: must be a YYYY-MM-DD string")
        problems += _check_prices(row.get("pricing"), f"{at}.pricing", required=True)
        mode = row.get("mode", "chat")
        pricing = row.get("pricing") if isinstance(row.get("pricing"), dict) else {}
        if mode == "chat" and pricing.get("output") is None:
            problems.append(f"{at}.pricing.output: a chat model needs an output price")
        long = row.get("long_context")
        if long is not None:
            if not isinstance(long, dict):
                problems.append(f"{at}.long_context: must be a mapping")
            else:
                above = long.get("above")
                if not isinstance(above, int) or isinstance(above, bool) or above < 1:
                    problems.append(f"{at}.long_context.above: must be a whole number of tokens >= 1")
                prices = {k: v for k, v in long.items() if k != "above"}
                problems += _check_prices(prices, f"{at}.long_context", required=True)
    return problems


def _is_date(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        dt.date.fromisoformat(v)
    except ValueError:
        return False
    return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", v))


def _check_prices(prices: Any, at: str, required: bool) -> list[str]:
    if not isinstance(prices, dict):
        return [f"{at}: must be a mapping of USD per million tokens"] if required else []
    problems = [f"{at}.{k}: unknown price (use {', '.join(PRICE_FIELDS)})" for k in prices if k not in PRICE_FIELDS]
    if required and prices.get("input") is None:
        problems.append(f"{at}.input: required")
    for k in PRICE_FIELDS:
        v = prices.get(k)
        if v is None:
            continue
        if not isinstance(v, int | float) or isinstance(v, bool):
            problems.append(f"{at}.{k}: must be a number")
            continue
        try:
            to_pico(v)
        except ValueError as e:
            problems.append(f"{at}.{k}: {e}")
    return problems


def _entry(row: dict[str, Any]) -> Entry:
    base = Rates.from_usd(row["pricing"])
    long = row.get("long_context")
    pricing = Pricing(
        base,
        Rates.from_usd(long) if long else None,
        long["above"] if long else None,
    )
    return Entry(
        provider=row["provider"],
        id=row["id"],
        mode=row.get("mode", "chat"),
        context_window=row.get("context_window"),
        max_output_tokens=row.get("max_output_tokens"),
        tokenizer=row.get("tokenizer"),
        pricing=pricing,
        source=row["source"],
        date=row["date"],
        aliases=tuple(row.get("aliases", ())),
    )


def normalize(model: str) -> str:
    """The comparable part of a model name: lower case, after the last '/', before a ':' suffix."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    return name.split(":", 1)[0] if ":" in name else name


class Catalog:
    def __init__(self, entries: list[Entry], date: str) -> None:
        self.entries = entries
        self.date = date
        self._by_name: dict[tuple[str, str], Entry] = {}
        for e in entries:
            for name in (e.id, *e.aliases):
                self._by_name[(e.provider, name)] = e
        self._cache: dict[tuple[str, str], Entry | None] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, kind: str, model: str) -> Entry | None:
        """The row for ``model`` served by a provider of ``kind``, or None."""
        key = (kind, model)
        if key in self._cache:
            return self._cache[key]
        family = FAMILIES.get(kind)
        hit = None if family is None else self._match(family, normalize(model))
        if len(self._cache) >= _LOOKUP_CACHE_MAX:
            self._cache.clear()
        self._cache[key] = hit
        return hit

    def _match(self, family: str, name: str) -> Entry | None:
        for _ in range(3):  # a name carries at most a couple of suffixes (``…-2024-08-06``, ``…-latest``)
            hit = self._by_name.get((family, name))
            if hit is not None:
                return hit
            for pattern in _SUFFIXES:
                stripped = pattern.sub("", name)
                if stripped != name:
                    name = stripped
                    break
            else:
                return None
        return self._by_name.get((family, name))


def parse(data: Any, source: str = str(CATALOG_PATH)) -> Catalog:
    problems = validate(data)
    if problems:
        raise CatalogError([f"{source}: {p}" for p in problems])
    return Catalog([_entry(r) for r in data["models"]], data["date"])


@functools.cache
def load_catalog(path: str = str(CATALOG_PATH)) -> Catalog:
    """The shipped catalog, parsed and validated once per process."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: start-up is not slowed
    with open(path, encoding="utf-8") as f:
        return parse(yaml.load(f, Loader=loader), path)
