"""Prices and the cost of one request, in integers only.

A price is kept as whole pico-dollars per token: USD per million tokens x 10^6, exact for any
price with at most 6 decimals (every published price is). A request's cost is the sum of tokens
x price in pico-dollars, rounded once to the nearest micro-dollar (half up): that integer is
what the usage hashes ``HINCRBY`` (``cost_micro_usd``) and what budgets count, so sums over any
number of records never drift. The rounding is at most half a micro-dollar per request.

Token classes (README "Model catalog, cost and budgets"): ``prompt_tokens`` hold every input token, cache reads and
writes included (the chat form's and Anthropic's as the gateway records them), so

    cost = (prompt - cache_read - cache_write) x input + cache_read x cached_input
           + cache_write x cache_write_price + completion x output

A missing ``cached_input`` or ``cache_write`` price bills those tokens as plain input (OpenAI
and Gemini do not bill writes apart). A missing input price, or a missing output price for a
request with completion tokens, leaves the request unpriced (cost 0, ``priced: false``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

PICO_PER_MICRO = 1_000_000
PICO_PER_USD_PER_MTOK = 1_000_000  # 1 USD per million tokens = 10^6 pico-dollars per token
PRICE_FIELDS = ("input", "cached_input", "cache_write", "output")


def amount(value: Any) -> Decimal:
    """A number >= 0 (a number or a numeric string, never a bool) as an exact Decimal, or ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError("must be a number")
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("must be a number") from None
    if not d.is_finite() or d < 0:
        raise ValueError("must be a number >= 0")
    return d


def to_pico(value: Any) -> int:
    """USD per million tokens (number or numeric string) -> pico-dollars per token; exact or ValueError."""
    pico = amount(value) * PICO_PER_USD_PER_MTOK
    if pico != pico.to_integral_value():
        raise ValueError("at most 6 decimal places (USD per million tokens)")
    return int(pico)


def usd_per_mtok(pico: int) -> float:
    """Pico-dollars per token -> USD per million tokens, for JSON (2500000 -> 2.5)."""
    return float(Decimal(pico) / PICO_PER_USD_PER_MTOK)


def micro_to_usd(micro: int) -> float:
    """Micro-dollars -> a JSON number of dollars (the nearest double to the exact decimal)."""
    return float(Decimal(micro) / PICO_PER_MICRO)


def format_usd(micro: int, places: int = 6) -> str:
    """Micro-dollars as an exact decimal string: ``1500`` -> ``0.001500`` (``places=0`` trims zeros)."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), PICO_PER_MICRO)
    text = f"{frac:06d}"
    if places == 0:
        text = text.rstrip("0")
        return f"{sign}{whole}.{text}" if text else f"{sign}{whole}"
    return f"{sign}{whole}.{text}"


def usd_to_micro(value: Any) -> int:
    """A budget in USD (number or string) -> whole micro-dollars; exact or ValueError."""
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("must be a number") from None
    micro = d * PICO_PER_MICRO
    if not d.is_finite() or micro != micro.to_integral_value():
        raise ValueError("at most 6 decimal places (USD)")
    return int(micro)


@dataclass(frozen=True, slots=True)
class Rates:
    """Pico-dollars per token of each class; None where the price is not known."""

    input: int | None = None
    cached_input: int | None = None
    cache_write: int | None = None
    output: int | None = None

    @classmethod
    def from_usd(cls, prices: dict[str, Any]) -> Rates:
        return cls(**{f: None if prices.get(f) is None else to_pico(prices[f]) for f in PRICE_FIELDS})

    def merged(self, over: Rates) -> Rates:
        """These rates with every price ``over`` knows replacing ours."""
        return Rates(*(getattr(over, f) if getattr(over, f) is not None else getattr(self, f) for f in PRICE_FIELDS))

    def to_json(self) -> dict[str, float | None]:
        return {f: None if getattr(self, f) is None else usd_per_mtok(getattr(self, f)) for f in PRICE_FIELDS}


@dataclass(frozen=True, slots=True)
class Pricing:
    """A model's prices: flat, or with a long-context tier for prompts above ``above`` tokens."""

    base: Rates
    long: Rates | None = None
    above: int | None = None

    @property
    def known(self) -> bool:
        return self.base.input is not None

    def rates_for(self, prompt_tokens: int) -> Rates:
        if self.long is not None and self.above is not None and prompt_tokens > self.above:
            return self.long
        return self.base

    def cost_pico(self, prompt: int, completion: int, cache_read: int = 0, cache_write: int = 0) -> int | None:
        """The exact cost in pico-dollars, or None when a price it needs is unknown."""
        r = self.rates_for(prompt)
        if r.input is None:
            return None
        prompt, completion = max(prompt, 0), max(completion, 0)
        read = min(max(cache_read, 0), prompt)
        write = min(max(cache_write, 0), prompt - read)
        total = (prompt - read - write) * r.input
        total += read * (r.input if r.cached_input is None else r.cached_input)
        total += write * (r.input if r.cache_write is None else r.cache_write)
        if completion:
            if r.output is None:
                return None
            total += completion * r.output
        return total

    def cost_micro(self, prompt: int, completion: int, cache_read: int = 0, cache_write: int = 0) -> int | None:
        """The cost rounded to the nearest micro-dollar (half up), or None when unpriced."""
        pico = self.cost_pico(prompt, completion, cache_read, cache_write)
        return None if pico is None else (pico + PICO_PER_MICRO // 2) // PICO_PER_MICRO

    def max_cost_micro(self, prompt: int, completion: int) -> int:
        """The most a request of ``prompt`` input and ``completion`` output tokens can cost, rounded up:
        every prompt token at the dearest prompt price (a cache write, usually), every completion token
        at output."""
        r = self.rates_for(prompt)
        if r.input is None:
            return 0
        per_prompt = max(r.input, r.cached_input or 0, r.cache_write or 0)
        pico = max(prompt, 0) * per_prompt + max(completion, 0) * (r.output or 0)
        return -(-pico // PICO_PER_MICRO)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = self.base.to_json()
        if self.long is not None and self.above is not None:
            out["long_context"] = {"above": self.above, **self.long.to_json()}
        return out


def cost_of(
    pricing: Pricing | None, prompt: int, completion: int, cache_read: int, cache_write: int
) -> tuple[int, bool]:
    """(micro-dollars, priced) of one request: ``(0, True)`` when it used no tokens at all."""
    if prompt <= 0 and completion <= 0:
        return 0, True
    if pricing is None:
        return 0, False
    micro = pricing.cost_micro(prompt, completion, cache_read, cache_write)
    return (0, False) if micro is None else (micro, True)
