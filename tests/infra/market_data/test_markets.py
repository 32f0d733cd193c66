"""Exchange rules from ccxt's recorded Binance markets, read through ccxt's own market code."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import ccxt
import pytest

from core.errors import FatalExchangeError
from core.risk.limits import MarketRules
from infra.market_data.markets import DEFAULT_RULES, market_rules, rules_from_exchange


@pytest.fixture
def recorded(shared_data: Path) -> ccxt.Exchange:
    """A binance client whose markets are ccxt's recorded ones (no network). The recording
    gives precision as decimal places, so the client reads it that way."""
    markets = json.loads((shared_data / "exchange/ccxt-static/markets/binance.json").read_text())
    exchange = ccxt.binance()
    exchange.precisionMode = ccxt.DECIMAL_PLACES
    exchange.set_markets(markets)
    return exchange


def test_rules_from_exchange_when_recorded_binance_markets_then_steps_ticks_and_minimums(
    recorded: ccxt.Exchange,
) -> None:
    rules = rules_from_exchange(recorded, ["BTC/USDT", "ETH/USDT", "XRP/USDT"])
    assert rules["BTC/USDT"] == MarketRules(
        Decimal("0.00001"), Decimal("0.01"), Decimal("0.00001"), Decimal(5)
    )
    assert rules["ETH/USDT"].amount_step == Decimal("0.0001")
    assert rules["XRP/USDT"].amount_step == Decimal(1)
    # The documented table for file data is the same recording.
    assert {s: DEFAULT_RULES[s] for s in rules} == rules


def test_rules_from_exchange_when_symbol_unknown_then_fatal_naming_it(
    recorded: ccxt.Exchange,
) -> None:
    with pytest.raises(FatalExchangeError, match=r"no market \['NOPE/USDT'\]"):
        rules_from_exchange(recorded, ["BTC/USDT", "NOPE/USDT"])


def test_market_rules_when_tick_size_mode_then_precision_is_the_step() -> None:
    market = {"precision": {"amount": 0.001, "price": 0.5}, "limits": {"cost": {"min": 10}}}
    rules = market_rules(market, ccxt.TICK_SIZE)
    assert (rules.amount_step, rules.price_step) == (Decimal("0.001"), Decimal("0.5"))
    assert (rules.min_amount, rules.min_notional) == (Decimal(0), Decimal(10))
