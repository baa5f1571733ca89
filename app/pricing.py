"""The USD cost of a request, from its usage.

Prices come from genai-prices (a maintained price list), never from a table of ours;
``governance.pricing_overrides`` in config.json wins over it. The package's own
calculation costs ~70 us, so each (provider, model) is looked up once an hour and its
per-token rates are kept; only tiered prices go back to the package every time.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

if TYPE_CHECKING:
    from app.config import GatewayConfig

log = logging.getLogger("bifrost.pricing")

# Our provider names where genai-prices uses another id.
PROVIDER_IDS = {"gemini": "google", "vertex": "google", "xai": "x-ai", "bedrock": "aws"}
LOOKUP_TTL = 3600.0
PER_MILLION = 1_000_000.0


@dataclass(frozen=True)
class Rates:
    """USD per million tokens."""

    input: float
    output: float
    cached_input: float
    cache_write: float | None = None


class Pricing:
    def __init__(self, config: "GatewayConfig") -> None:
        self.overrides: dict[tuple[str, str], Rates] = {}
        governance = (config.raw or {}).get("governance") or {}
        for item in governance.get("pricing_overrides") or ():
            rates = Rates(
                float(item["input_cost_per_million_tokens"]),
                float(item["output_cost_per_million_tokens"]),
                float(item.get("cached_input_cost_per_million_tokens", item["input_cost_per_million_tokens"])),
            )
            self.overrides[(item["provider"], item["model"])] = rates
        self._found: dict[tuple[str, str], tuple[float, Any]] = {}  # -> (looked up at, Rates | ModelPrice | None)

    @staticmethod
    def warm() -> None:
        """Load the price list (~150 ms, ~15k objects) at worker start rather than in the first request,
        so it is in place before the worker freezes its start-up objects out of the GC (gunicorn.conf.py)."""
        _package_price("openai", "gpt-4o-mini")

    def cost(self, provider: str, model: str, usage: Mapping[str, Any]) -> float | None:
        """USD for this usage, or None when the model has no known price."""
        tokens = Tokens.of(usage)
        if tokens is None:
            return None
        rates = self.overrides.get((provider, model))
        price = rates if rates is not None else self._lookup(provider, model)
        if price is None:
            return None
        if isinstance(price, Rates):
            return tokens.priced(price)
        try:  # a tiered price: the package does the arithmetic
            from genai_prices import Usage

            return float(price.calc_price(Usage(**tokens.package_usage()))["total_price"])
        except Exception:
            log.exception("pricing %s/%s failed", provider, model)
            return None

    def _lookup(self, provider: str, model: str) -> Any:
        key = (provider, model)
        found = self._found.get(key)
        now = time.monotonic()
        if found is not None and now - found[0] < LOOKUP_TTL:
            return found[1]
        price = _package_price(PROVIDER_IDS.get(provider, provider), model)
        self._found[key] = (now, price)
        return price


class Tokens(NamedTuple):
    """Canonical usage as the counts prices apply to (a tuple: made on every priced request)."""

    input: int  # all input tokens, cached ones included (OpenAI's prompt_tokens)
    cached: int
    output: int  # reasoning tokens included, as OpenAI counts them
    cache_write: int = 0

    @classmethod
    def of(cls, usage: Mapping[str, Any]) -> "Tokens | None":
        try:
            prompt = int(usage.get("prompt_tokens") or 0)
            completion = int(usage.get("completion_tokens") or 0)
            details = usage.get("prompt_tokens_details") or {}
            cached = int(details.get("cached_tokens") or 0)
            cache_write = int(details.get("cache_creation_tokens") or 0)
        except (TypeError, ValueError, AttributeError):
            return None
        return cls(prompt, min(cached, prompt), completion, cache_write)

    def priced(self, rates: Rates) -> float:
        fresh = self.input - self.cached - self.cache_write
        write_rate = rates.cache_write if rates.cache_write is not None else rates.input
        total = (
            fresh * rates.input + self.cached * rates.cached_input
            + self.cache_write * write_rate + self.output * rates.output
        )
        return total / PER_MILLION

    def package_usage(self) -> dict[str, int]:
        return {"input_tokens": self.input, "cache_read_tokens": self.cached,
                "cache_write_tokens": self.cache_write, "output_tokens": self.output}


def _package_price(provider_id: str, model: str) -> Any:
    """The package's price for a model: plain Rates when it is per-token, else its ModelPrice."""
    try:
        from genai_prices import Usage, calc_price

        found = calc_price(Usage(input_tokens=1, output_tokens=1), model, provider_id=provider_id)
    except LookupError:
        return None
    except Exception:
        log.exception("price lookup for %s/%s failed", provider_id, model)
        return None
    price = found.model_price
    plain = {name: getattr(price, name, None) for name in ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")}
    if all(value is None or _is_number(value) for value in plain.values()):
        input_rate = float(plain["input_mtok"] or 0)
        return Rates(
            input_rate,
            float(plain["output_mtok"] or 0),
            float(plain["cache_read_mtok"]) if plain["cache_read_mtok"] is not None else input_rate,
            float(plain["cache_write_mtok"]) if plain["cache_write_mtok"] is not None else None,
        )
    return price


def _is_number(value: Any) -> bool:
    from decimal import Decimal

    return isinstance(value, (int, float, Decimal))
