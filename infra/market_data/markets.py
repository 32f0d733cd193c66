"""Exchange trading rules per symbol (amount step, price tick, minimum amount and notional):
from ccxt's `load_markets()` for a live exchange, from a documented table for file data.

Without them every order would use one generic step and no minimum, so a live order could be
refused by the exchange or rounded to an amount it does not accept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import ccxt

from core.errors import FatalExchangeError
from core.risk.limits import MarketRules
from infra.exchange_errors import ccxt_errors

D = Decimal

# Binance spot rules as ccxt's recorded Binance markets give them (ccxt/ccxt,
# ts/src/test/static/markets/binance.json, MIT; ../shared/data/exchange/ccxt-static):
# (amount step, price tick, minimum amount, minimum notional in the quote currency).
DEFAULT_RULES: Mapping[str, MarketRules] = {
    "BTC/USDT": MarketRules(D("0.00001"), D("0.01"), D("0.00001"), D(5)),
    "ETH/USDT": MarketRules(D("0.0001"), D("0.01"), D("0.0001"), D(5)),
    "LTC/USDT": MarketRules(D("0.001"), D("0.01"), D("0.001"), D(5)),
    "ADA/USDT": MarketRules(D("0.1"), D("0.0001"), D("0.1"), D(5)),
    "XRP/USDT": MarketRules(D(1), D("0.0001"), D(1), D(5)),
    "DOGE/USDT": MarketRules(D(1), D("0.00001"), D(1), D(5)),
    "TRX/USDT": MarketRules(D("0.1"), D("0.00001"), D("0.1"), D(5)),
}


def default_rules(symbols: Iterable[str]) -> dict[str, MarketRules]:
    """The table's rules for the symbols it knows; others get MarketRules()' generic step."""
    return {s: DEFAULT_RULES[s] for s in symbols if s in DEFAULT_RULES}


def rules_from_exchange(exchange: ccxt.Exchange, symbols: Iterable[str]) -> dict[str, MarketRules]:
    """Each symbol's rules from the exchange's markets (loaded once per client)."""
    with ccxt_errors(f"{exchange.id} load_markets"):
        markets = exchange.load_markets()
    missing = [s for s in symbols if s not in markets]
    if missing:
        raise FatalExchangeError(f"{exchange.id} has no market {missing}")
    return {s: market_rules(markets[s], exchange.precisionMode) for s in symbols}


def market_rules(market: Mapping[str, Any], precision_mode: int) -> MarketRules:
    """One ccxt market structure as MarketRules, reading its precision the way the exchange's
    precisionMode says (a tick size, or a count of decimal places)."""
    precision, limits = market.get("precision") or {}, market.get("limits") or {}
    generic = MarketRules()
    return MarketRules(
        amount_step=_step(precision.get("amount"), precision_mode) or generic.amount_step,
        price_step=_step(precision.get("price"), precision_mode) or generic.price_step,
        min_amount=_number((limits.get("amount") or {}).get("min")),
        min_notional=_number((limits.get("cost") or {}).get("min")),
    )


def _step(value: object, mode: int) -> Decimal | None:
    if value is None:
        return None
    number = Decimal(str(value))
    if mode == ccxt.DECIMAL_PLACES:
        return Decimal(1).scaleb(-int(number))
    if mode == ccxt.TICK_SIZE:
        return number
    raise FatalExchangeError(f"precision mode {mode} (significant digits) is not supported")


def _number(value: object) -> Decimal:
    return Decimal(0) if value is None else Decimal(str(value))
