"""Cost from usage: genai-prices' list, config overrides first, None for unknown models."""
from __future__ import annotations

import pytest

from app.config import parse_config
from app.pricing import Pricing

USAGE = {"prompt_tokens": 1000, "completion_tokens": 100, "prompt_tokens_details": {"cached_tokens": 500}}


def pricing(overrides=()):
    return Pricing(parse_config({"governance": {"pricing_overrides": list(overrides)}}, environ={}))


def test_known_model_is_priced_from_the_package():
    from genai_prices import Usage, calc_price

    expected = calc_price(Usage(input_tokens=1000, cache_read_tokens=500, output_tokens=100),
                          "gpt-4o-mini", provider_id="openai").total_price
    assert pricing().cost("openai", "gpt-4o-mini", USAGE) == pytest.approx(float(expected))


def test_override_wins_and_cached_price_defaults_to_input():
    rule = {"provider": "openai", "model": "gpt-4o-mini",
            "input_cost_per_million_tokens": 2, "output_cost_per_million_tokens": 10}
    cost = pricing([rule]).cost("openai", "gpt-4o-mini", USAGE)
    assert cost == pytest.approx((1000 * 2 + 100 * 10) / 1e6)


def test_override_with_cached_price():
    rule = {"provider": "openai", "model": "m", "input_cost_per_million_tokens": 2,
            "output_cost_per_million_tokens": 10, "cached_input_cost_per_million_tokens": 1}
    assert pricing([rule]).cost("openai", "m", USAGE) == pytest.approx((500 * 2 + 500 * 1 + 100 * 10) / 1e6)


def test_unknown_model_costs_none():
    assert pricing().cost("openai", "no-such-model-xyz", USAGE) is None


def test_gemini_maps_to_the_packages_google_id():
    assert pricing().cost("gemini", "gemini-2.0-flash", {"prompt_tokens": 1000, "completion_tokens": 100}) > 0


def test_reasoning_tokens_are_priced_once_as_output():
    rule = {"provider": "openai", "model": "o-test", "input_cost_per_million_tokens": 1,
            "output_cost_per_million_tokens": 4}
    usage = {"prompt_tokens": 100, "completion_tokens": 50, "completion_tokens_details": {"reasoning_tokens": 30}}
    assert pricing([rule]).cost("openai", "o-test", usage) == pytest.approx((100 * 1 + 50 * 4) / 1e6)
