"""A risk state as plain JSON values and back, exactly (Decimals as strings): a decision
records the state it was decided on, so it can be replayed bit for bit."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from core.risk.limits import RiskState
from core.risk.state import TradingState
from core.types import Symbol


def state_to_json(state: RiskState) -> dict[str, Any]:
    return {
        "cash": str(state.cash),
        "positions": _amounts(state.positions),
        "prices": _amounts(state.prices),
        "daily_pnl": str(state.daily_pnl),
        "day_start_equity": str(state.day_start_equity),
        "open_buys": _amounts(state.open_buys),
        "open_sells": _amounts(state.open_sells),
        "open_orders": state.open_orders,
        "trading_state": state.trading_state.value,
        "halt_reason": state.halt_reason,
        "candle_age_s": state.candle_age.total_seconds(),
        "entered_at": {s: t.isoformat() for s, t in sorted(state.entered_at.items())},
    }


def state_from_json(data: Mapping[str, Any]) -> RiskState:
    return RiskState(
        cash=Decimal(data["cash"]),
        positions=_decimals(data["positions"]),
        prices=_decimals(data["prices"]),
        daily_pnl=Decimal(data["daily_pnl"]),
        day_start_equity=Decimal(data["day_start_equity"]),
        open_buys=_decimals(data["open_buys"]),
        open_sells=_decimals(data["open_sells"]),
        open_orders=int(data["open_orders"]),
        trading_state=TradingState(data["trading_state"]),
        halt_reason=str(data["halt_reason"]),
        candle_age=timedelta(seconds=float(data["candle_age_s"])),
        entered_at={Symbol(s): datetime.fromisoformat(t) for s, t in data["entered_at"].items()},
    )


def _amounts(values: Mapping[Symbol, Decimal]) -> dict[str, str]:
    return {s: str(v) for s, v in sorted(values.items())}


def _decimals(values: Mapping[str, str]) -> dict[Symbol, Decimal]:
    return {Symbol(s): Decimal(v) for s, v in values.items()}
