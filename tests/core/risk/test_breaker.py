"""Each of the circuit breaker's five thresholds, alone and on its boundary."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.risk.breaker import BreakerConfig, BreakerInputs, TradeResult, read, trips

T0 = datetime(2024, 9, 1, tzinfo=UTC)
D = Decimal
CFG = BreakerConfig(
    max_daily_loss_pct=D("0.05"),
    max_drawdown_pct=D("0.15"),
    max_consecutive_losses=3,
    min_win_rate=0.4,
    win_rate_window=5,
    min_sharpe=-0.2,
    sharpe_window=6,
)


def trades(*pnls: str) -> list[TradeResult]:
    return [TradeResult(T0 + timedelta(hours=i), D(p), D(100)) for i, p in enumerate(pnls)]


def inputs(
    pnls: tuple[str, ...] = (), now: str = "10000", day: str = "10000", peak: str = "10000"
) -> BreakerInputs:
    return BreakerInputs(trades(*pnls), D(now), D(day), D(peak))


def names(i: BreakerInputs) -> list[str]:
    return [r.split(":")[0] for r in trips(read(i, CFG), CFG)]


def test_breaker_when_all_quiet_then_no_trip() -> None:
    assert names(inputs(("1", "-1", "2", "1", "-1", "3"))) == []


@pytest.mark.parametrize(("now", "tripped"), [("9501", False), ("9500", True)])
def test_breaker_when_daily_loss_reaches_limit_then_trips(now: str, tripped: bool) -> None:
    assert (names(inputs(now=now, peak=now)) == ["DAILY_LOSS"]) is tripped


@pytest.mark.parametrize(("now", "tripped"), [("8501", False), ("8500", True)])
def test_breaker_when_drawdown_from_peak_reaches_limit_then_trips(now: str, tripped: bool) -> None:
    assert (names(inputs(now=now, day=now, peak="10000")) == ["MAX_DRAWDOWN"]) is tripped


def test_breaker_when_consecutive_losses_reach_limit_then_trips() -> None:
    assert names(inputs(("5", "-1", "-1"))) == []
    assert names(inputs(("5", "-1", "-1", "-1"))) == ["CONSECUTIVE_LOSSES"]
    assert (
        read(inputs(("-1", "-1", "0", "-1")), CFG).consecutive_losses == 1
    )  # a flat trade ends it


def test_breaker_when_win_rate_below_floor_over_full_window_then_trips() -> None:
    assert names(inputs(("-1", "-1", "-1"))) == ["CONSECUTIVE_LOSSES"]  # window not full yet
    assert read(inputs(("-1", "-1", "-1")), CFG).win_rate is None
    assert names(inputs(("1", "-1", "-1", "2", "-1"))) == []  # 40%: on the floor, passes
    assert "WIN_RATE" in names(inputs(("3", "-1", "2", "-1", "-1", "-1")))  # last 5: 1 win


def test_breaker_when_sharpe_below_floor_then_trips() -> None:
    steady_losses = ("-2", "1", "-2", "-2", "1", "-2")  # mean -1, sd ~1.41 -> -0.71
    reading = read(inputs(steady_losses), CFG)
    assert reading.sharpe == pytest.approx(-1 / 1.4142, rel=1e-3)
    assert "SHARPE" in names(inputs(steady_losses))
    assert read(inputs(("1",) * 6), CFG).sharpe == float("inf")


@settings(max_examples=300)
@given(
    st.lists(st.floats(-0.5, 0.5, allow_nan=False, allow_subnormal=False), min_size=2, max_size=60)
)
def test_sharpe_when_any_returns_then_the_exact_statistics_within_rounding(
    returns: list[float],
) -> None:
    config = BreakerConfig(sharpe_window=len(returns))
    reading = read(
        BreakerInputs(
            [TradeResult(T0 + timedelta(hours=i), D(repr(r)), D(1)) for i, r in enumerate(returns)],
            D(10000),
            D(10000),
            D(10000),
        ),
        config,
    )
    rets = [float(D(repr(r)) / D(1)) for r in returns]
    mean, spread = statistics.fmean(rets), statistics.pstdev(rets)
    assert reading.sharpe is not None
    if spread > 1e-12:
        assert reading.sharpe == pytest.approx(mean / spread, rel=1e-9, abs=1e-12)
    elif spread == 0:
        assert math.isinf(reading.sharpe)


def test_sharpe_when_every_return_is_the_same_then_infinite_like_the_exact_statistics() -> None:
    for pnl, sign in (("0.1", 1), ("-0.3", -1)):
        reading = read(inputs((pnl,) * 6), CFG)
        assert reading.sharpe == sign * math.inf
