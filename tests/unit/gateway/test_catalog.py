"""The model catalog (gateway/data/catalog.yaml, gateway/governance/catalog.py): its schema, the
models it must know, name matching, and how config and catalog facts combine in routing."""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import yaml

from gateway.config import parse_config
from gateway.governance.catalog import CATALOG_PATH, FAMILIES, CatalogError, load_catalog, normalize, parse, validate
from gateway.pipeline.routing import Router


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    with open(CATALOG_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


# -- the shipped file ----------------------------------------------------------------------------
def test_the_shipped_catalog_validates_against_the_schema(data: dict[str, Any]) -> None:
    assert validate(data) == []
    rows = data["models"]
    assert len(rows) >= 60
    for i, row in enumerate(rows):
        # Every row sourced and dated; every price a number >= 0 (the schema says so, and so does this).
        assert row["source"].startswith("https://"), i
        assert dt.date.fromisoformat(row["date"]) <= dt.date.fromisoformat(data["date"]), i
        for tier in (row["pricing"], row.get("long_context") or {}):
            for field, price in tier.items():
                if field != "above":
                    assert isinstance(price, int | float) and price >= 0, (i, field)
    # The catalog's date is its newest row's.
    assert data["date"] == max(r["date"] for r in rows)


def test_every_supported_provider_has_rows_and_its_own_pricing_page(data: dict[str, Any]) -> None:
    by_family: dict[str, set[str]] = {}
    for row in data["models"]:
        by_family.setdefault(row["provider"], set()).add(row["source"].split("/")[2])
    assert set(by_family) == set(FAMILIES.values())
    hosts = {
        "openai": {"developers.openai.com"},
        "azure": {"azure.microsoft.com"},
        "anthropic": {"platform.claude.com"},
        "gemini": {"ai.google.dev"},
        "cohere": {"cohere.com"},
        "fireworks": {"docs.fireworks.ai"},
    }
    for family, seen in by_family.items():
        assert seen <= hosts[family], (family, seen)  # cited from the provider itself, never a third party


WELL_KNOWN = {
    "openai": [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o3",
        "o3-mini",
        "o4-mini",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
        "text-embedding-3-small",
        "text-embedding-3-large",
    ],
    "azure": ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "o4-mini", "gpt-5", "text-embedding-3-small"],
    "anthropic": [
        "claude-sonnet-4-5",
        "claude-opus-4-5",
        "claude-opus-4-1",
        "claude-opus-4",
        "claude-haiku-4-5",
        "claude-3-5-haiku",
        "claude-3-5-sonnet",
    ],
    "gemini": [
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-2.0-flash",
        "gemini-embedding-001",
    ],
    "cohere": ["command-a-03-2025", "command-r-08-2024", "command-r-plus-08-2024", "embed-v4.0"],
    "fireworks": [
        "llama-v3p1-8b-instruct",
        "llama-v3p1-70b-instruct",
        "deepseek-v3",
        "qwen2p5-72b-instruct",
        "nomic-embed-text-v1.5",
    ],
}


@pytest.mark.parametrize("family", sorted(WELL_KNOWN))
def test_the_well_known_models_are_there(family: str) -> None:
    cat = load_catalog()
    for model in WELL_KNOWN[family]:
        e = cat.lookup(family, model)
        assert e is not None and e.pricing is not None and e.pricing.known, (family, model)


def test_openai_rows_name_their_tokenizer_and_others_none(data: dict[str, Any]) -> None:
    for row in data["models"]:
        if row["provider"] in ("openai", "azure"):
            assert row.get("tokenizer") in ("o200k_base", "cl100k_base"), row["id"]
        else:
            assert "tokenizer" not in row, row["id"]


def test_a_few_published_prices_to_the_cent() -> None:
    """Spot checks against the providers' pages (a wrong edit to the file shows up here too)."""
    cat = load_catalog()

    def usd(family: str, model: str) -> dict[str, Any]:
        e = cat.lookup(family, model)
        assert e is not None and e.pricing is not None
        return e.pricing.to_json()

    assert usd("openai", "gpt-4o") == {"input": 2.5, "cached_input": 1.25, "cache_write": None, "output": 10.0}
    assert usd("openai", "gpt-4o-mini")["input"] == 0.15 and usd("openai", "gpt-4o-mini")["output"] == 0.6
    assert usd("anthropic", "claude-sonnet-4-5")["cache_write"] == 3.75
    assert usd("anthropic", "claude-sonnet-4-5")["long_context"]["above"] == 200_000
    assert usd("gemini", "gemini-2.5-pro")["long_context"]["input"] == 2.5
    assert usd("cohere", "command-r7b-12-2024")["input"] == 0.0375


# -- the schema catches bad rows -----------------------------------------------------------------
def _one(**row: Any) -> dict[str, Any]:
    base = {
        "provider": "openai",
        "id": "m",
        "pricing": {"input": 1, "output": 2},
        "source": "https://example.com/pricing",
        "date": "2026-12-01",
    }
    base.update(row)
    return {"date": "2026-12-01", "models": [base]}


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"pricing": {"input": -1, "output": 2}}, "models.0.pricing.input: must be a number >= 0"),
        ({"pricing": {"input": 0.1234567, "output": 2}}, "models.0.pricing.input: at most 6 decimal places"),
        ({"pricing": {"input": "1", "output": 2}}, "models.0.pricing.input: must be a number"),
        ({"pricing": {"output": 2}}, "models.0.pricing.input: required"),
        ({"pricing": {"input": 1}}, "models.0.pricing.output: a chat model needs an output price"),
        ({"pricing": {"input": 1, "output": 2, "batch": 1}}, "models.0.pricing.batch: unknown price"),
        ({"source": None}, "models.0.source: must be the https:// URL"),
        ({"source": "http://example.com"}, "models.0.source: must be the https:// URL"),
        ({"date": "2026-13-01"}, "models.0.date: must be a YYYY-MM-DD string"),
        ({"date": None}, "models.0.date: must be a YYYY-MM-DD string"),
        ({"provider": "bedrock"}, "models.0.provider: must be one of"),
        ({"id": "GPT-4o"}, "models.0.id: must be a lower-case model name"),
        ({"context_window": 0}, "models.0.context_window: must be a whole number >= 1"),
        ({"tokenizer": "p50k_base"}, "models.0.tokenizer: must be one of"),
        ({"colour": "red"}, "models.0.colour: unknown field"),
        ({"long_context": {"input": 2, "output": 3}}, "models.0.long_context.above: must be a whole number"),
    ],
)
def test_the_schema_names_each_problem(row: dict[str, Any], problem: str) -> None:
    problems = validate(_one(**row))
    assert any(p.startswith(problem) for p in problems), problems
    with pytest.raises(CatalogError):
        parse(_one(**row))


def test_a_name_listed_twice_for_a_provider_is_refused(data: dict[str, Any]) -> None:
    doc = copy.deepcopy(data)
    doc["models"].append(dict(doc["models"][0]))
    assert any("listed twice" in p for p in validate(doc))


def test_embedding_rows_need_no_output_price() -> None:
    assert validate(_one(mode="embedding", pricing={"input": 0.02})) == []


# -- matching ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "model", "row"),
    [
        ("openai", "gpt-4o", "gpt-4o"),
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("openai", "GPT-4o-2024-11-20", "gpt-4o"),
        ("openai", "openai/gpt-4o", "gpt-4o"),  # an OpenAI-compatible router's vendor prefix
        ("openai", "gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # an exact row beats the stripped name
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai", "gpt-4-0613", "gpt-4"),
        ("openai", "o3-2025-04-16", "o3"),
        ("azure", "gpt-4o", "gpt-4o"),
        ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("anthropic", "claude-opus-4-0", "claude-opus-4"),
        ("anthropic", "claude-opus-4-20250514", "claude-opus-4"),
        ("gemini", "models/gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("gemini", "gemini-embedding-001", "gemini-embedding-001"),
        ("cohere", "command-a", "command-a-03-2025"),
        ("fireworks", "accounts/fireworks/models/llama-v3p1-8b-instruct", "llama-v3p1-8b-instruct"),
        ("fireworks", "accounts/fireworks/models/llama-v3p1-8b-instruct:my-lora", "llama-v3p1-8b-instruct"),
        ("fireworks", "deepseek-v3-0324", "deepseek-v3"),
    ],
)
def test_names_match_through_prefixes_suffixes_and_aliases(kind: str, model: str, row: str) -> None:
    e = load_catalog().lookup(kind, model)
    assert e is not None and e.id == row


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        ("mock", "echo"),  # the mock has no list prices
        ("openai", "gpt-4o-mini-transcribe"),  # a prefix is not a match
        ("openai", "my-fine-tune"),
        ("anthropic", "gpt-4o"),  # a row belongs to its provider family
        ("openai", "claude-sonnet-4-5"),
        ("azure", "my-deployment"),  # an Azure deployment not named after its model
    ],
)
def test_unknown_names_do_not_match(kind: str, model: str) -> None:
    assert load_catalog().lookup(kind, model) is None


def test_normalize() -> None:
    assert normalize(" Accounts/Fireworks/Models/Llama-V3p1-8b-Instruct:lora ") == "llama-v3p1-8b-instruct"


# -- routing: catalog facts with no config, config over catalog ----------------------------------
def _router(**cfg: Any) -> Router:
    base: dict[str, Any] = {
        "keys": [{"name": "k", "key": "sk-k"}],
        "providers": {
            "openai": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"},
            "anthropic": {"kind": "anthropic"},
            "mock": {"kind": "mock"},
        },
    }
    base.update(cfg)
    return Router(parse_config(base, env={}))


def test_a_passthrough_model_gets_the_catalog_facts_with_no_config() -> None:
    facts = _router().resolve("openai/gpt-4o").deployments[0].facts
    assert (facts.context_window, facts.max_output_tokens, facts.tokenizer) == (128_000, 16_384, "o200k_base")
    assert facts.pricing is not None and facts.pricing.to_json()["input"] == 2.5
    assert _router().resolve("mock/echo").deployments[0].facts.pricing is None


def test_config_overrides_the_catalog_field_by_field() -> None:
    r = _router(
        models=[
            {"name": "openai/gpt-4o", "context_window": 64_000, "pricing": {"input": 2.0}},
            {"name": "mock/echo", "pricing": {"input": 0.5, "output": 1.25}},
            {"name": "anthropic/claude-sonnet-4-5", "pricing": {"output": 14}},
        ]
    )
    gpt = r.resolve("openai/gpt-4o").deployments[0].facts
    assert gpt.context_window == 64_000 and gpt.max_output_tokens == 16_384  # the rest from the catalog
    assert gpt.pricing is not None
    assert gpt.pricing.to_json() == {"input": 2.0, "cached_input": 1.25, "cache_write": None, "output": 10.0}
    mock = r.resolve("mock/echo").deployments[0].facts
    assert mock.pricing is not None and mock.pricing.to_json()["output"] == 1.25
    claude = r.resolve("anthropic/claude-sonnet-4-5").deployments[0].facts
    assert claude.pricing is not None
    # A configured price replaces the catalog's flat prices; the long-context tier is the catalog's no more.
    assert claude.pricing.to_json() == {"input": 3.0, "cached_input": 0.3, "cache_write": 3.75, "output": 14.0}


def test_an_alias_deployment_is_priced_by_its_own_upstream() -> None:
    r = _router(
        models=[
            {
                "name": "smart",
                "deployments": [
                    {"provider": "openai", "upstream": "gpt-4o-mini"},
                    {"provider": "anthropic", "upstream": "claude-haiku-4-5-20251001"},
                ],
            }
        ]
    )
    deps = r.resolve("smart").deployments
    assert [d.facts.pricing.to_json()["input"] for d in deps if d.facts.pricing] == [0.15, 1.0]


def test_configured_prices_are_exact_decimals() -> None:
    r = _router(models=[{"name": "mock/echo", "pricing": {"input": "0.000001", "output": 123.456789}}])
    p = r.resolve("mock/echo").deployments[0].facts.pricing
    assert p is not None and (p.base.input, p.base.output) == (1, 123_456_789)
    assert Decimal(str(p.to_json()["output"])) == Decimal("123.456789")


@pytest.mark.parametrize(
    ("pricing", "problem"),
    [
        ({"input": -1}, "models.0.pricing.input: must be a number >= 0"),
        ({"input": 0.1234567}, "models.0.pricing.input: at most 6 decimal places (USD per million tokens)"),
        ({"output": "cheap"}, "models.0.pricing.output: must be a number"),
        ({"batch": 1}, "models.0.pricing.batch: unknown field (check the spelling)"),
    ],
)
def test_pricing_config_problems_are_named(pricing: dict[str, Any], problem: str) -> None:
    from gateway.config import ConfigError

    cfg = {
        "keys": [{"name": "k", "key": "sk-k"}],
        "providers": {"mock": {"kind": "mock"}},
        "models": [{"name": "mock/echo", "pricing": pricing}],
    }
    with pytest.raises(ConfigError) as ei:
        parse_config(cfg, "c.yaml", env={})
    assert f"c.yaml: {problem}" in ei.value.problems
