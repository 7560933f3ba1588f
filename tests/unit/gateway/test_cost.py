"""Cost arithmetic (gateway/governance/cost.py): integers only, exact, rounded once per request."""

from __future__ import annotations

import asyncio
import random
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.accounting.usage.record import UsageRecord
from gateway.accounting.usage.store import MemoryStore, usage_body
from gateway.governance.cost import (
    Pricing,
    Rates,
    cost_of,
    format_usd,
    micro_to_usd,
    to_pico,
    usd_per_mtok,
    usd_to_micro,
)


def pricing(**usd: float) -> Pricing:
    return Pricing(Rates.from_usd(usd))


def exact_micro(tokens_and_usd_per_mtok: list[tuple[int, str]]) -> Fraction:
    """The cost in micro-dollars as an exact fraction (USD per million tokens x tokens = micro-dollars)."""
    return sum((Fraction(t) * Fraction(p) for t, p in tokens_and_usd_per_mtok), Fraction(0))


def round_half_up(x: Fraction) -> int:
    return int((x + Fraction(1, 2)) // 1)


def test_prices_are_whole_pico_dollars_per_token() -> None:
    assert to_pico(2.5) == 2_500_000
    assert to_pico("0.075") == 75_000
    assert to_pico(0.0375) == 37_500
    assert to_pico(0.000001) == 1
    assert to_pico(0) == 0
    assert usd_per_mtok(75_000) == 0.075
    for bad in (-1, 0.0000001, "x", float("nan"), True):
        with pytest.raises(ValueError):
            to_pico(bad)


def test_dollar_strings_are_exact() -> None:
    assert format_usd(1_500) == "0.001500"
    assert format_usd(12_345_678_901) == "12345.678901"
    assert format_usd(10_000_000, 0) == "10"
    assert format_usd(9_500_000, 0) == "9.5"
    assert format_usd(0, 0) == "0"
    assert usd_to_micro("10.25") == 10_250_000
    assert micro_to_usd(1) == 0.000001


def test_a_chat_request_at_list_prices() -> None:
    p = pricing(input=0.15, cached_input=0.075, output=0.6)  # gpt-4o-mini
    # 1,000 prompt tokens of which 400 cached, 200 completion:
    # 600 x 0.15 + 400 x 0.075 + 200 x 0.6 = 90 + 30 + 120 = 240 micro-dollars.
    assert p.cost_micro(1000, 200, cache_read=400) == 240
    assert cost_of(p, 1000, 200, 400, 0) == (240, True)


def test_anthropic_cache_reads_and_writes_are_billed_as_anthropic_documents() -> None:
    # https://platform.claude.com/docs/en/about-claude/pricing: writes 1.25x input, reads 0.1x input.
    # The gateway's prompt_tokens hold input_tokens + cache_creation + cache_read (as OpenAI's do).
    p = pricing(input=3, cached_input=0.3, cache_write=3.75, output=15)  # claude-sonnet-4-5
    prompt = 100 + 1_000 + 2_000
    # 100 x 3 + 1000 x 3.75 + 2000 x 0.3 + 50 x 15 = 300 + 3750 + 600 + 750 = 5400
    assert p.cost_micro(prompt, 50, cache_read=2_000, cache_write=1_000) == 5_400


def test_unknown_cache_prices_bill_those_tokens_as_input() -> None:
    p = pricing(input=1, output=2)
    assert p.cost_micro(100, 0, cache_read=60, cache_write=40) == 100


def test_the_long_context_tier_prices_the_whole_request() -> None:
    p = Pricing(Rates.from_usd({"input": 1.25, "output": 10}), Rates.from_usd({"input": 2.5, "output": 15}), 200_000)
    assert p.cost_micro(200_000, 1_000) == 250_000 + 10_000
    assert p.cost_micro(200_001, 1_000) == round_half_up(exact_micro([(200_001, "2.5"), (1_000, "15")]))


def test_an_unknown_price_leaves_the_request_unpriced() -> None:
    assert cost_of(None, 10, 5, 0, 0) == (0, False)
    assert cost_of(pricing(input=1), 10, 5, 0, 0) == (0, False)  # no output price, completion tokens used
    assert cost_of(pricing(input=1), 10, 0, 0, 0) == (10, True)  # an embedding
    assert cost_of(None, 0, 0, 0, 0) == (0, True)  # no tokens: nothing to price


def test_rounding_is_to_the_nearest_micro_dollar_half_up() -> None:
    p = pricing(input=0.5, output=0.25)
    assert p.cost_micro(1, 0) == 1  # 0.5 -> 1
    assert p.cost_micro(0, 1) == 0  # 0.25 -> 0
    assert p.cost_micro(0, 3) == 1  # 0.75 -> 1
    assert p.cost_micro(3, 0) == 2  # 1.5 -> 2


PRICES = st.decimals(min_value=0, max_value=200, places=6, allow_nan=False, allow_infinity=False)
TOKENS = st.integers(min_value=0, max_value=2_000_000)


@given(PRICES, PRICES, PRICES, PRICES, TOKENS, TOKENS, TOKENS, TOKENS)
def test_every_cost_is_the_exact_amount_rounded_once(
    pin, pcache, pwrite, pout, prompt, completion, read, write
) -> None:  # type: ignore[no-untyped-def]
    p = pricing(input=pin, cached_input=pcache, cache_write=pwrite, output=pout)
    read = min(read, prompt)
    write = min(write, prompt - read)
    want = exact_micro(
        [(prompt - read - write, str(pin)), (read, str(pcache)), (write, str(pwrite)), (completion, str(pout))]
    )
    assert p.cost_micro(prompt, completion, read, write) == round_half_up(want)
    # The reservation is never below what the request then costs, however the prompt splits.
    assert p.max_cost_micro(prompt, completion) >= p.cost_micro(prompt, completion, read, write)


def test_no_float_drift_over_a_million_records() -> None:
    """A million requests: the integer sum equals the exact sum of the per-request costs to the
    micro-dollar (computed independently, in thousandths of a micro-dollar), and prints exactly."""
    rng = random.Random(1234)
    p = pricing(input=0.15, cached_input=0.075, output=0.6)  # 150, 75 and 600 thousandths of a micro-dollar
    total = exact = 0
    for _ in range(1_000_000):
        prompt, completion = rng.randrange(0, 5_000), rng.randrange(0, 1_000)
        read = rng.randrange(0, prompt + 1) if rng.random() < 0.3 else 0
        c = p.cost_micro(prompt, completion, read)
        assert c is not None
        total += c
        exact += ((prompt - read) * 150 + read * 75 + completion * 600 + 500) // 1000
    assert total == exact
    assert format_usd(total) == f"{exact // 1_000_000}.{exact % 1_000_000:06d}"
    assert micro_to_usd(total) == float(Fraction(total, 1_000_000))  # the JSON number is the nearest double


def test_the_usage_store_sums_micro_dollars_exactly() -> None:
    store = MemoryStore()
    want = 0
    for i in range(10_000):
        c = 1 + (i * 7919) % 1_000_003
        want += c
        store.add(
            UsageRecord(
                id=f"r{i}", key="k", model="m/x", provider="m", endpoint="/v1/chat/completions", status=200,
                stream=False, prompt_tokens=1, completion_tokens=1, cost_micro_usd=c, ts=1_800_000_000.0,
            )
        )  # fmt: skip
    h = store.hashes[("k", "20270115")]
    assert h["cost_micro_usd"] == want and h["m/x|cost_micro_usd"] == want
    body = usage_body("k", "2027-01-15", *asyncio.run(store.usage("k", "20270115")))
    assert body["cost_usd"] == want / 1e6 and body["models"]["m/x"]["cost_usd"] == want / 1e6
    assert format_usd(round(body["cost_usd"] * 1e6)) == format_usd(want)  # the JSON number round-trips
