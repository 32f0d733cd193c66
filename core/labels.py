"""Training labels. Kept apart from features: a label looks forward by construction.

Horizons are durations, not row counts: the close a label compares with is the one stored at
exactly t + horizon, so a label never silently spans a gap in the candles (a missing candle
leaves the label undefined instead of comparing with a later one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd


class LabelError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class TripleBarrier:
    """Take-profit and stop-loss as log returns from the entry close; the time limit is the
    label horizon."""

    take_profit: float
    stop_loss: float

    def __post_init__(self) -> None:
        if self.take_profit <= 0 or self.stop_loss <= 0:
            raise LabelError(
                f"barriers must be positive log returns, got take_profit={self.take_profit} "
                f"stop_loss={self.stop_loss}"
            )


def _series(candles: pd.DataFrame, column: str) -> pd.Series:
    return pd.Series(
        candles[column].to_numpy(dtype=np.float64),
        index=pd.DatetimeIndex(candles["open_time"], name="open_time"),
    )


def _check(horizon: timedelta) -> None:
    if horizon <= timedelta(0):
        raise LabelError(f"label horizon must be positive, got {horizon}")


def forward_log_return(candles: pd.DataFrame, horizon: timedelta) -> pd.Series:
    """log(close[t + horizon] / close[t]); NaN where no candle is stored at t + horizon."""
    _check(horizon)
    close = _series(candles, "close")
    later = close.reindex(close.index + pd.Timedelta(horizon)).to_numpy()
    return pd.Series(np.log(later / close.to_numpy()), index=close.index, name="forward_return")


def forward_return_label(candles: pd.DataFrame, horizon: timedelta, cost: float) -> pd.Series:
    """1 when the log return from close[t] to close[t + horizon] beats `cost` (fee + slippage,
    both ways), else 0; NaN where the future is unknown (the end, or a gap)."""
    forward = forward_log_return(candles, horizon)
    label = (forward > cost).astype(np.float64)
    return label.where(forward.notna()).rename("label")


def triple_barrier_label(
    candles: pd.DataFrame, horizon: timedelta, barrier: TripleBarrier, cost: float
) -> pd.Series:
    """López de Prado's triple barrier from each close: 1 when the take-profit is touched first,
    0 when the stop-loss is (or both in one candle: the stop is assumed first, the cautious
    reading of a bar), and at the time limit 1 only if the return beats `cost`. NaN where any
    candle of the window is missing."""
    _check(horizon)
    close, high, low = (_series(candles, c) for c in ("close", "high", "low"))
    step = pd.Series(close.index).diff().min()
    steps = int(pd.Timedelta(horizon) / step) if pd.notna(step) else 0
    if steps < 1:
        return pd.Series(np.nan, index=close.index, name="label")
    entry = close.to_numpy()
    label = np.full(len(entry), np.nan)
    decided = np.zeros(len(entry), dtype=bool)
    complete = np.ones(len(entry), dtype=bool)
    for k in range(1, steps + 1):
        at = close.index + step * k
        hi = np.log(high.reindex(at).to_numpy() / entry)
        lo = np.log(low.reindex(at).to_numpy() / entry)
        complete &= ~np.isnan(hi)
        stop = ~decided & (lo <= -barrier.stop_loss)
        take = ~decided & ~stop & (hi >= barrier.take_profit)
        label[stop], label[take] = 0.0, 1.0
        decided |= stop | take
    final = forward_log_return(candles, horizon).to_numpy()
    label[~decided] = (final[~decided] > cost).astype(np.float64)
    label[~complete | np.isnan(final)] = np.nan
    return pd.Series(label, index=close.index, name="label")


def touches_filled(candles: pd.DataFrame, horizon: timedelta) -> np.ndarray:
    """Whether a synthetic (filled) candle lies in [t, t + horizon], for every t: a label
    that reads one is not a market fact."""
    filled = np.concatenate([[0.0], np.cumsum(candles["is_filled"].to_numpy(dtype=float))])
    times = pd.DatetimeIndex(candles["open_time"]).asi8
    start = np.searchsorted(times, times, side="left")
    end = np.searchsorted(times, times + pd.Timedelta(horizon).value, side="right")
    return np.asarray((filled[end] - filled[start]) > 0)
