"""A decision's risk state survives the ledger's JSON exactly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from core.risk.limits import RiskState
from core.risk.snapshot import state_from_json, state_to_json
from core.risk.state import TradingState
from core.types import Symbol

BTC, ETH = Symbol("BTC/USDT"), Symbol("ETH/USDT")


def test_state_when_through_json_then_identical_to_the_last_digit() -> None:
    state = RiskState(
        cash=Decimal("9123.456789012345678"),
        positions={BTC: Decimal("0.012345678901234567"), ETH: Decimal(0)},
        prices={BTC: Decimal("43092.13"), ETH: Decimal("2301.5")},
        daily_pnl=Decimal("-12.5"),
        day_start_equity=Decimal("10000"),
        open_buys={ETH: Decimal("0.4")},
        open_sells={},
        open_orders=1,
        trading_state=TradingState.HALTED,
        halt_reason="breaker",
        candle_age=timedelta(seconds=65.5),
        entered_at={BTC: datetime(2024, 2, 3, 9, tzinfo=UTC)},
    )
    back = state_from_json(json.loads(json.dumps(state_to_json(state))))
    assert back == state
    assert back.equity == state.equity
