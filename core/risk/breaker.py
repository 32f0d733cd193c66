"""Circuit breaker: five independent thresholds over the account's recent results. Any one that
is crossed trips it; tripping halts trading for a cooldown (the caller persists that).

- daily loss: equity now vs equity at 00:00 UTC, as a fraction of the latter;
- drawdown: equity now vs the highest equity seen;
- consecutive losing trades (a trade = a closing fill with its realised P&L, fees included);
- win rate over the last N trades (only once N trades exist);
- Sharpe over the last N trades: mean / standard deviation of per-trade returns (not
  annualised; trades are not evenly spaced in time), only once N trades exist.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    max_daily_loss_pct: Decimal = Decimal("0.05")
    max_drawdown_pct: Decimal = Decimal("0.15")
    max_consecutive_losses: int = 6
    min_win_rate: float = 0.25
    win_rate_window: int = 20
    min_sharpe: float = -0.5
    sharpe_window: int = 30
    cooldown: timedelta = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class TradeResult:
    closed_at: datetime
    pnl: Decimal  # realised, fees included
    notional: Decimal  # what was closed, at the closing price

    @property
    def ret(self) -> float:
        return float(self.pnl / self.notional) if self.notional else 0.0


@dataclass(frozen=True, slots=True)
class BreakerInputs:
    trades: Sequence[TradeResult]  # oldest first
    equity_now: Decimal
    day_start_equity: Decimal
    peak_equity: Decimal


@dataclass(frozen=True, slots=True)
class BreakerReading:
    daily_loss_pct: float
    drawdown_pct: float
    consecutive_losses: int
    win_rate: float | None
    sharpe: float | None


@dataclass(frozen=True, slots=True)
class TradeStats:
    """What the breaker reads from the recent trades alone (they change only when one
    closes; the equity changes every candle)."""

    consecutive_losses: int
    win_rate: float | None
    sharpe: float | None


def trade_stats(trades: Sequence[TradeResult], config: BreakerConfig) -> TradeStats:
    streak = 0
    for trade in reversed(trades):
        if trade.pnl >= 0:
            break
        streak += 1
    recent = trades[-config.win_rate_window :]
    win_rate = (
        sum(t.pnl > 0 for t in recent) / len(recent)
        if len(trades) >= config.win_rate_window
        else None
    )
    sharpe = None
    if len(trades) >= config.sharpe_window:
        returns = [t.ret for t in trades[-config.sharpe_window :]]
        mean, spread = _mean_and_spread(returns)
        sharpe = mean / spread if spread > 0 else (math.inf if mean >= 0 else -math.inf)
    return TradeStats(streak, win_rate, sharpe)


def read(
    inputs: BreakerInputs, config: BreakerConfig, stats: TradeStats | None = None
) -> BreakerReading:
    """`stats`: `trade_stats` of `inputs.trades`, when the caller kept them."""
    daily = (
        float((inputs.day_start_equity - inputs.equity_now) / inputs.day_start_equity)
        if inputs.day_start_equity > 0
        else 0.0
    )
    peak = max(inputs.peak_equity, inputs.equity_now)
    drawdown = float((peak - inputs.equity_now) / peak) if peak > 0 else 0.0
    if stats is None:
        stats = trade_stats(inputs.trades, config)
    return BreakerReading(daily, drawdown, stats.consecutive_losses, stats.win_rate, stats.sharpe)


def _mean_and_spread(returns: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation, two passes of exact sums. The breaker reads
    them at every candle once the window is full: statistics.pstdev, exact through fractions,
    cost 100 us there and made a backtest's cost per candle grow with its trades."""
    n = len(returns)
    mean = math.fsum(returns) / n
    if min(returns) == max(returns):  # the mean's rounding must not make a spread of nothing
        return returns[0], 0.0
    spread = math.sqrt(math.fsum((r - mean) ** 2 for r in returns) / n)
    return mean, spread


def trips(reading: BreakerReading, config: BreakerConfig) -> list[str]:
    """Every threshold crossed, each as 'NAME: value vs limit'."""
    out = []
    if reading.daily_loss_pct >= float(config.max_daily_loss_pct):
        out.append(
            f"DAILY_LOSS: {reading.daily_loss_pct:.2%} lost today, limit "
            f"{float(config.max_daily_loss_pct):.2%}"
        )
    if reading.drawdown_pct >= float(config.max_drawdown_pct):
        out.append(
            f"MAX_DRAWDOWN: {reading.drawdown_pct:.2%} below the peak, limit "
            f"{float(config.max_drawdown_pct):.2%}"
        )
    if reading.consecutive_losses >= config.max_consecutive_losses:
        out.append(
            f"CONSECUTIVE_LOSSES: {reading.consecutive_losses} in a row, limit "
            f"{config.max_consecutive_losses}"
        )
    if reading.win_rate is not None and reading.win_rate < config.min_win_rate:
        out.append(
            f"WIN_RATE: {reading.win_rate:.0%} over the last {config.win_rate_window} trades, "
            f"floor {config.min_win_rate:.0%}"
        )
    if reading.sharpe is not None and reading.sharpe < config.min_sharpe:
        out.append(
            f"SHARPE: {reading.sharpe:.2f} over the last {config.sharpe_window} trades, "
            f"floor {config.min_sharpe:.2f}"
        )
    return out
