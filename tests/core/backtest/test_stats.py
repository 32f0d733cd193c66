from __future__ import annotations

import math
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.backtest.stats import (
    TOTAL,
    BacktestInputError,
    compute_stats,
    drawdown,
    equity_curve,
    round_trips,
)
from core.orders import Fill
from core.portfolio import OverSell
from core.types import ClientOrderId, Side, Symbol

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
BTC, ETH = Symbol("BTC/USDT"), Symbol("ETH/USDT")
_ids = count()


def fill(
    side: Side,
    qty: str,
    price: str,
    fee: str = "0",
    at: datetime = T0,
    symbol: str = BTC,
    fee_in_base: bool = False,
) -> Fill:
    n = next(_ids)
    return Fill(
        ClientOrderId(f"c{n}"),
        Symbol(symbol),
        side,
        Decimal(qty),
        Decimal(price),
        Decimal(fee),
        at,
        f"f{n}",
        fee_in_base=fee_in_base,
    )


def hourly(values: list[float], start: datetime = T0) -> pd.Series:
    return pd.Series(
        values, index=pd.date_range(start, periods=len(values), freq="1h"), dtype=float
    )


def test_round_trips_when_one_buy_and_sell_with_fees_then_exact_decimal_pnl() -> None:
    # Arrange
    fills = [
        fill(Side.BUY, "0.5", "40000", fee="2", at=T0),
        fill(Side.SELL, "0.5", "42000", fee="2.1", at=T0 + 3 * HOUR),
    ]
    # Act
    [trip] = round_trips(fills, {})
    # Assert
    assert trip.pnl == Decimal("995.9")  # 0.5 x 2000 - 2 - 2.1
    assert (trip.entry_price, trip.exit_price) == (Decimal(40000), Decimal(42000))
    assert trip.fees == Decimal("4.1")
    assert trip.quantity == Decimal("0.5")
    assert trip.closed_at == T0 + 3 * HOUR
    assert trip.duration == 3 * HOUR
    assert trip.ret == pytest.approx(995.9 / 20000)


def test_round_trips_when_open_at_the_end_then_marked_at_the_last_price() -> None:
    fills = [fill(Side.BUY, "1", "100", fee="0.1", at=T0)]

    [trip] = round_trips(fills, {BTC: Decimal(110)}, marked_at=T0 + 5 * HOUR)

    assert trip.is_open
    assert trip.closed_at is None
    assert trip.exit_price is None
    assert trip.pnl == Decimal("9.9")  # -0.1 fee + 10 unrealised
    assert trip.duration == 5 * HOUR


def test_round_trips_when_open_without_a_last_price_then_raises() -> None:
    with pytest.raises(BacktestInputError, match="no last price"):
        round_trips([fill(Side.BUY, "1", "100")], {})


def test_round_trips_when_several_buys_and_partial_sells_then_one_trip_until_flat() -> None:
    # Arrange: avg 110 over 4 units; sells at 130 (1) and 90 (3); then a new trip
    fills = [
        fill(Side.BUY, "2", "100", at=T0),
        fill(Side.BUY, "2", "120", at=T0 + HOUR),
        fill(Side.SELL, "1", "130", at=T0 + 2 * HOUR),
        fill(Side.SELL, "3", "90", at=T0 + 3 * HOUR),
        fill(Side.BUY, "1", "50", at=T0 + 4 * HOUR),
    ]
    # Act
    first, second = round_trips(fills, {BTC: Decimal(60)})
    # Assert
    assert first.pnl == Decimal(-40)  # (130 - 110) x 1 + (90 - 110) x 3
    assert first.quantity == Decimal(4)
    assert first.entry_price == Decimal(110)
    assert first.exit_price == Decimal(100)  # (130 + 270) / 4
    assert (first.opened_at, first.closed_at) == (T0, T0 + 3 * HOUR)
    assert second.opened_at == T0 + 4 * HOUR
    assert second.is_open
    assert second.pnl == Decimal(10)


def test_round_trips_when_fees_in_base_then_flat_after_selling_what_is_left() -> None:
    fills = [
        fill(Side.BUY, "1", "100", fee="0.001", fee_in_base=True, at=T0),
        fill(Side.SELL, "0.998", "110", fee="0.001", fee_in_base=True, at=T0 + HOUR),
    ]

    [trip] = round_trips(fills, {})

    assert not trip.is_open
    assert trip.pnl == Decimal("9.78")  # -0.1 on the buy; 10 x 0.998 - 100 x 0.001
    assert trip.fees == Decimal("0.21")  # 0.001 x 100 + 0.001 x 110


def test_round_trips_when_selling_more_than_held_then_raises_oversell() -> None:
    with pytest.raises(OverSell):
        round_trips([fill(Side.BUY, "1", "100"), fill(Side.SELL, "2", "100")], {})


def test_equity_curve_when_fills_inside_candles_then_counted_at_those_closes() -> None:
    # Arrange: buy 2 @ 100 (fee 1) in candle 1, sell 2 @ 95 (fee 1) in candle 3
    closes = {BTC: hourly([100, 110, 90, 120, 130])}
    fills = [
        fill(Side.BUY, "2", "100", fee="1", at=T0 + HOUR),
        fill(Side.SELL, "2", "95", fee="1", at=T0 + 3 * HOUR + timedelta(minutes=20)),
    ]
    # Act
    curve = equity_curve(Decimal(1000), fills, closes, "1h")
    # Assert: 1000; 799 + 220; 799 + 180; 799 + 190 - 1; unchanged
    assert curve.tolist() == [1000.0, 1019.0, 979.0, 988.0, 988.0]
    assert curve.index[0] == T0 + HOUR  # at the close of the first candle
    assert list(curve.index) == list(closes[BTC].index + HOUR)


def test_equity_curve_when_no_timeframe_then_inferred_from_the_candles() -> None:
    closes = {BTC: hourly([100, 110])}

    curve = equity_curve(Decimal(1000), [], closes)

    assert list(curve.index) == [T0 + HOUR, T0 + 2 * HOUR]


def test_equity_curve_when_two_symbols_then_each_valued_at_its_own_close() -> None:
    closes = {BTC: hourly([100, 200]), ETH: hourly([10, 5])}
    fills = [
        fill(Side.BUY, "1", "100", at=T0),
        fill(Side.BUY, "10", "10", at=T0 + HOUR, symbol=ETH),
    ]

    curve = equity_curve(Decimal(1000), fills, closes, "1h")

    assert curve.tolist() == [1000.0, 800 + 200 + 50]


def test_equity_curve_when_fill_has_no_candles_then_raises() -> None:
    with pytest.raises(BacktestInputError, match="ETH/USDT"):
        equity_curve(
            Decimal(1000), [fill(Side.BUY, "1", "1", symbol=ETH)], {BTC: hourly([1])}, "1h"
        )


def test_drawdown_when_known_curve_then_fraction_below_the_running_peak() -> None:
    curve = hourly([1200, 900, 1100, 1300])

    below = drawdown(curve, Decimal(1000))

    assert below.tolist() == pytest.approx([0.0, 0.25, 1 - 1100 / 1200, 0.0])


def all_in_at_first_candle(values: list[float]) -> tuple[list[Fill], dict[str, pd.Series]]:
    """1000 cash buys 10 units at 100 in the first candle: equity is 10 x close."""
    return [fill(Side.BUY, "10", "100", at=T0)], {BTC: hourly(values)}


def test_compute_stats_when_known_curve_then_max_drawdown_with_its_dates() -> None:
    fills, closes = all_in_at_first_candle([100, 120, 90, 110, 130])

    run = compute_stats(Decimal(1000), fills, closes, "1h").run

    assert run.max_drawdown == pytest.approx(0.25)  # 1200 -> 900
    assert run.max_drawdown_start == T0 + 2 * HOUR  # close of the 120 candle
    assert run.max_drawdown_end == T0 + 3 * HOUR
    assert run.calmar == pytest.approx(run.cagr / 0.25)
    assert run.exposure == 1.0
    assert run.final_equity == Decimal(1300)
    assert run.total_return == pytest.approx(0.3)


def test_compute_stats_when_known_returns_then_sharpe_and_sortino_annualised_per_candle() -> None:
    fills, closes = all_in_at_first_candle([100, 120, 90, 110, 130])
    returns = [0.0, 0.2, -0.25, 1100 / 900 - 1, 1300 / 1100 - 1]
    periods = 365 * 24

    run = compute_stats(Decimal(1000), fills, closes, "1h").run

    mean = statistics.mean(returns)
    assert run.sharpe == pytest.approx(mean / statistics.stdev(returns) * math.sqrt(periods))
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    assert run.sortino == pytest.approx(mean / downside * math.sqrt(periods))
    assert run.cagr == pytest.approx(1.3 ** (periods / 5) - 1)


def test_compute_stats_when_no_fills_then_zero_trades_flat_equity_and_no_ratios() -> None:
    # Arrange
    closes = {BTC: hourly([100, 120, 90]), ETH: hourly([10, 11, 12])}
    # Act
    stats = compute_stats(Decimal(1000), [], closes, "1h")
    # Assert
    run = stats.run
    assert stats.equity.tolist() == [1000.0] * 3
    assert stats.trades == []
    assert (run.trades, run.win_rate, run.exposure, run.fees) == (0, 0.0, 0.0, Decimal(0))
    assert (run.sharpe, run.sortino, run.calmar) == (None, None, None)
    assert (run.max_drawdown, run.max_drawdown_start, run.max_drawdown_end) == (0.0, None, None)
    assert (run.total_return, run.cagr, run.final_equity) == (0.0, 0.0, Decimal(1000))
    assert (run.best_pair, run.worst_pair) == (None, None)
    assert run.market_change == pytest.approx({BTC: -0.1, ETH: 0.2})
    assert run.buy_and_hold_return == pytest.approx(0.05)
    assert [(p.symbol, p.trades, p.avg_duration) for p in stats.pairs] == [
        (BTC, 0, None),
        (ETH, 0, None),
    ]
    assert stats.total.symbol == TOTAL
    assert stats.monthly_returns.tolist() == [0.0]


def test_compute_stats_when_held_for_half_the_candles_then_exposure_is_half() -> None:
    closes = {BTC: hourly([100, 100, 100, 100])}
    fills = [
        fill(Side.BUY, "1", "100", at=T0 + HOUR),
        fill(Side.SELL, "1", "100", at=T0 + 3 * HOUR),
    ]

    run = compute_stats(Decimal(1000), fills, closes, "1h").run

    assert run.exposure == 0.5  # held at the closes of candles 1 and 2


def test_compute_stats_when_pairs_win_lose_and_draw_then_counted_per_pair_and_total() -> None:
    # Arrange
    closes = {BTC: hourly([100] * 6), ETH: hourly([10] * 6), Symbol("XRP/USDT"): hourly([1] * 6)}
    fills = [
        fill(Side.BUY, "1", "100", at=T0),
        fill(Side.SELL, "1", "110", fee="1", at=T0 + HOUR),  # +9
        fill(Side.BUY, "1", "100", at=T0 + 2 * HOUR),
        fill(Side.SELL, "1", "100", at=T0 + 4 * HOUR),  # 0
        fill(Side.BUY, "10", "10", at=T0, symbol=ETH),
        fill(Side.SELL, "10", "9", at=T0 + 2 * HOUR, symbol=ETH),  # -10
    ]
    # Act
    stats = compute_stats(Decimal(1000), fills, closes, "1h")
    # Assert
    btc, eth, xrp = stats.pairs
    assert (btc.trades, btc.wins, btc.draws, btc.losses) == (2, 1, 1, 0)
    assert btc.total_profit == Decimal(9)
    assert btc.avg_profit_pct == pytest.approx((9 / 100 + 0) / 2 * 100)
    assert btc.total_profit_pct == pytest.approx(0.9)
    assert btc.avg_duration == 1.5 * HOUR
    assert (eth.trades, eth.losses, eth.win_rate) == (1, 1, 0.0)
    assert (xrp.trades, xrp.total_profit) == (0, Decimal(0))
    total = stats.total
    assert (total.trades, total.wins, total.draws, total.losses) == (3, 1, 1, 1)
    assert total.total_profit == Decimal(-1)
    assert total.fees == Decimal(1)
    assert (stats.run.best_pair, stats.run.worst_pair) == (BTC, ETH)
    assert stats.run.final_equity == Decimal(999)


def test_compute_stats_when_two_months_then_monthly_returns_at_month_ends() -> None:
    days = pd.date_range("2024-01-30", periods=4, freq="1D", tz="UTC")  # Jan 30, 31, Feb 1, 2
    closes = {BTC: pd.Series([100.0, 110.0, 120.0, 99.0], index=days)}
    fills = [fill(Side.BUY, "10", "100", at=days[0].to_pydatetime())]

    monthly = compute_stats(Decimal(1000), fills, closes, "1d").monthly_returns

    assert [t.strftime("%Y-%m-%d") for t in monthly.index] == ["2024-01-31", "2024-02-29"]
    assert monthly.tolist() == pytest.approx([0.1, 990 / 1100 - 1])


def test_compute_stats_when_no_candles_then_raises() -> None:
    with pytest.raises(BacktestInputError, match="no candles"):
        compute_stats(Decimal(1000), [], {BTC: pd.Series(dtype=float)}, "1h")


PAIRS = (BTC, ETH)


@st.composite
def backtests(draw: st.DrawFn) -> tuple[list[Fill], dict[str, pd.Series]]:
    """Random closes (two pairs) and a consistent run of buys and sells over them: a sell
    gives half or all of what is held, fees in quote or base."""
    n = draw(st.integers(2, 24))
    closes = {
        s: hourly([c / 100 for c in draw(st.lists(st.integers(1, 10**6), min_size=n, max_size=n))])
        for s in PAIRS
    }
    step = st.tuples(
        st.integers(0, n - 1),
        st.sampled_from(PAIRS),
        st.sampled_from(["buy", "half", "all"]),
        st.integers(1, 10**6),  # price in cents
        st.integers(1, 10**4),  # quantity in thousandths
        st.integers(0, 50),  # fee in basis points
        st.booleans(),  # fee in base
    )
    held = dict.fromkeys(PAIRS, Decimal(0))
    fills = []
    for k, symbol, kind, cents, milli, bps, in_base in sorted(
        draw(st.lists(step, min_size=1, max_size=30))
    ):
        price, rate = Decimal(cents) / 100, Decimal(bps) / 10000
        if kind == "buy":
            qty = Decimal(milli) / 1000
        elif held[symbol] == 0:
            continue
        else:
            given = held[symbol] if kind == "all" else held[symbol] / 2
            qty = given / (1 + rate) if in_base else given
        fee = qty * rate if in_base else qty * price * rate
        if in_base and kind != "buy":
            fee = given - qty  # what is given away is exactly `given`
        side = Side.BUY if kind == "buy" else Side.SELL
        made = fill(side, str(qty), str(price), str(fee), T0 + k * HOUR, symbol, in_base)
        fills.append(made)
        held[symbol] += made.holding_change
    return fills, closes


@settings(max_examples=150, deadline=None)
@given(backtests())
def test_compute_stats_when_any_run_then_final_equity_is_cash_plus_every_trip_pnl(
    case: tuple[list[Fill], dict[str, pd.Series]],
) -> None:
    # Arrange
    fills, closes = case
    start = Decimal(10**7)
    # Act
    stats = compute_stats(start, fills, closes, "1h")
    # Assert: the exact accounting agrees with itself, the float curve within rounding
    pnl = sum((t.pnl for t in stats.trades), Decimal(0))
    assert abs(stats.run.final_equity - (start + pnl)) < Decimal("1e-12")
    assert stats.total.total_profit == pnl
    assert stats.equity.iloc[-1] == pytest.approx(float(start + pnl), rel=1e-12)
    assert sum(p.trades for p in stats.pairs) == len(stats.trades) == stats.total.trades
    assert sum(t.is_open for t in stats.trades) <= len(PAIRS)  # at most one open per pair
    assert stats.run.fees == sum((t.fees for t in stats.trades), Decimal(0))


def synthetic_year(pairs: int, candles: int, fills_per_pair: int) -> tuple[list[Fill], dict]:
    rng = np.random.default_rng(7)
    index = pd.date_range(T0, periods=candles, freq="5min")
    closes, fills = {}, []
    for p in range(pairs):
        symbol = f"P{p}/USDT"
        closes[symbol] = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.002, candles))), index)
        held = Decimal(0)
        for j, k in enumerate(sorted(rng.choice(candles, fills_per_pair, replace=False))):
            price = Decimal(f"{closes[symbol].iloc[k]:.4f}")
            at = index[k].to_pydatetime()
            if j % 5 == 4:
                fills.append(fill(Side.SELL, str(held), str(price), "0.1", at, symbol))
                held = Decimal(0)
            else:
                qty = (100 / price).quantize(Decimal("0.00001"))
                fills.append(fill(Side.BUY, str(qty), str(price), "0.1", at, symbol))
                held += qty
    return fills, closes


def test_compute_stats_when_8_pairs_of_70k_candles_and_10k_fills_then_under_a_second() -> None:
    fills, closes = synthetic_year(pairs=8, candles=70_000, fills_per_pair=1250)

    best = math.inf
    for _ in range(2):  # the better of two runs: the first pays for imports and caches
        began = time.perf_counter()
        stats = compute_stats(Decimal(10_000), fills, closes, "5m")
        best = min(best, time.perf_counter() - began)

    assert len(fills) == 10_000
    assert stats.total.trades == 2000
    assert len(stats.equity) == 70_000
    assert best < 1.0


GENETRADER = Path("ohlcv") / "genetrader-binance-spot-2024"


def real_closes(shared_data: Path, base: str) -> pd.DataFrame:
    frame = pd.read_feather(shared_data / GENETRADER / f"{base}_USDT-5m.feather")
    return frame.set_index("date")


def test_compute_stats_when_real_btc_and_eth_then_market_change_and_buy_and_hold(
    shared_data: Path,
) -> None:
    # Arrange: 0.1 BTC bought at the first candle's open, held to the end
    btc, eth = real_closes(shared_data, "BTC"), real_closes(shared_data, "ETH")
    assert btc.index[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert btc["open"].iloc[0] == 42283.58
    closes = {BTC: btc["close"], ETH: eth["close"]}
    fills = [fill(Side.BUY, "0.1", "42283.58", at=btc.index[0].to_pydatetime())]
    # Act
    stats = compute_stats(Decimal(10_000), fills, closes, "5m")
    # Assert: first and last closes 42397.23 -> 56661.97 (BTC), 2287.84 -> 2388.19 (ETH)
    run = stats.run
    assert run.market_change[BTC] == pytest.approx(56661.97 / 42397.23 - 1)
    assert run.market_change[ETH] == pytest.approx(2388.19 / 2287.84 - 1)
    assert run.buy_and_hold_return == pytest.approx(
        ((56661.97 / 42397.23 - 1) + (2388.19 / 2287.84 - 1)) / 2
    )
    assert run.final_equity == Decimal(10_000) - Decimal("4228.358") + Decimal("5666.197")
    assert stats.equity.iloc[-1] == pytest.approx(float(run.final_equity))
    assert run.exposure == 1.0
    assert run.start == datetime(2024, 1, 1, tzinfo=UTC)
    assert run.end == btc.index[-1].to_pydatetime() + timedelta(minutes=5)
    assert [t.is_open for t in stats.trades] == [True]
    assert list(stats.monthly_returns.index.month) == list(range(1, 10))
