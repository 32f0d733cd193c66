"""The gate's view read from the ledger, on real candles: today's P&L is equity now against
equity at 00:00 UTC (positions valued at the last close before midnight); open orders reserve
cash and count as exposure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd

from core.candles.bar import Bar
from core.clock import FakeClock
from core.types import Symbol, to_decimal
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from infra.ledger.ledger import Ledger
from services.execution import settle_simulated, submit_order
from services.risk_snapshot import RiskSnapshots
from tests.services.open_book import ACCOUNT, record_order

BTC = Symbol("BTC/USDT")
DAY1 = datetime(2024, 1, 1, tzinfo=UTC)


def close_at(candles: pd.DataFrame, t: datetime) -> Decimal:
    row = candles[candles["open_time"] == pd.Timestamp(t)].iloc[0]
    return to_decimal(float(row["close"]))


def test_snapshot_when_position_held_over_midnight_then_daily_pnl_from_last_close_before_it(
    ledger: Ledger, btc_1h: pd.DataFrame
) -> None:
    candles = btc_1h.head(60)
    ledger.candles.upsert("binance", "BTC/USDT", "1h", candles)
    ledger.accounts.ensure(ACCOUNT, Decimal(10000), DAY1)
    broker = SimulatedBroker(SimulationConfig(slippage_bps=Decimal(0), fee_rate=Decimal(0)))
    bought_at = DAY1 + timedelta(hours=10)
    coid = record_order(ledger, "BTC/USDT", 0, qty="0.1", at=bought_at - timedelta(hours=1))
    clock = FakeClock(bought_at)
    submit_order(ledger, broker, coid, clock)
    row = candles[candles["open_time"] == pd.Timestamp(bought_at)].iloc[0]
    bar = Bar(
        bought_at, *(to_decimal(float(row[c])) for c in ("open", "high", "low", "close", "volume"))
    )
    [fill] = settle_simulated(ledger, broker, ACCOUNT, BTC, bar, clock)
    resting = record_order(
        ledger, "BTC/USDT", 0, qty="0.01", limit="1000", at=DAY1 + timedelta(hours=30)
    )
    submit_order(ledger, broker, resting, clock)

    now = DAY1 + timedelta(days=1, hours=12)
    price_now = close_at(candles, now - timedelta(hours=1))
    state = RiskSnapshots(ledger, ACCOUNT, "binance", "1h").snapshot({BTC: price_now}, now)

    cash = Decimal(10000) - fill.price * Decimal("0.1")
    midnight_close = close_at(candles, DAY1 + timedelta(hours=23))  # the 23:00 candle's close
    assert state.day_start_equity == cash + Decimal("0.1") * midnight_close
    assert state.daily_pnl == Decimal("0.1") * (price_now - midnight_close)
    assert state.positions == {BTC: Decimal("0.1")}
    assert state.open_buys == {BTC: Decimal("0.01")}
    assert state.cash == cash - Decimal("0.01") * price_now  # reserved for the open buy
    assert state.equity == cash + Decimal("0.1") * price_now


def test_entries_when_closed_and_reopened_between_snapshots_then_the_new_entry_time() -> None:
    """The policy holds for the horizon counted from the entry: a holding sold and bought
    again between two decisions is a new one, though it holds the same quantity."""
    from core.orders import Fill
    from core.types import ClientOrderId, Side

    def fill(n: int, side: Side, hours: int) -> Fill:
        return Fill(ClientOrderId(f"c{n}"), BTC, side, Decimal("0.1"), Decimal(40000), Decimal(0),
                    DAY1 + timedelta(hours=hours), f"f{n}")  # fmt: skip

    class Fills:  # the two reads entries() makes
        def __init__(self) -> None:
            self.kept: list[Fill] = []

        def count(self, account: str) -> int:
            return len(self.kept)

        def history(self, account: str) -> list[Fill]:
            return list(self.kept)

    class Ledger:
        fills = Fills()

    ledger = Ledger()
    snapshots = RiskSnapshots(ledger, ACCOUNT, "binance", "1h")  # type: ignore[arg-type]
    ledger.fills.kept.append(fill(1, Side.BUY, 1))
    assert snapshots.entries({BTC: Decimal("0.1")}) == {BTC: DAY1 + timedelta(hours=1)}
    ledger.fills.kept += [fill(2, Side.SELL, 3), fill(3, Side.BUY, 4)]
    assert snapshots.entries({BTC: Decimal("0.1")}) == {BTC: DAY1 + timedelta(hours=4)}
    assert snapshots.entries({BTC: Decimal(0)}) == {}
