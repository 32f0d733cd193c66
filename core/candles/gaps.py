"""Candles missing from the timeframe grid, and what to do about them.

Policies: KEEP leaves the rows absent and records the gap; FFILL inserts flat candles at the
previous close with zero volume, flagged is_filled (never used as training labels); REJECT
refuses the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import numpy as np
import pandas as pd

from core.candles.timeframe import timeframe_delta
from core.errors import FatalError


class GapPolicy(StrEnum):
    KEEP = "keep"
    FFILL = "ffill"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Gap:
    first_missing: datetime  # open time of the first absent candle
    last_missing: datetime
    missing: int


class CandleGapError(FatalError, ValueError):
    def __init__(self, source: str, gaps: list[Gap]) -> None:
        self.source = source
        self.gaps = gaps
        total = sum(g.missing for g in gaps)
        first = gaps[0]
        super().__init__(
            f"{source}: {total} missing candle(s) in {len(gaps)} gap(s) (policy reject); first "
            f"gap {first.first_missing.isoformat()} .. {first.last_missing.isoformat()}"
        )


def find_gaps(open_times: pd.Series, timeframe: str, after: datetime | None = None) -> list[Gap]:
    """Gaps in sorted open times; `after` (the last stored candle) also catches a leading gap."""
    step = pd.Timedelta(timeframe_delta(timeframe))
    times = pd.DatetimeIndex(open_times)
    if after is not None:
        times = pd.DatetimeIndex([pd.Timestamp(after)]).append(times)
    if len(times) < 2:
        return []
    deltas = times[1:] - times[:-1]
    gaps = []
    for i in np.flatnonzero(deltas > step):
        missing = int(deltas[i] / step) - 1
        if missing <= 0:
            continue  # off-grid spacing smaller than two steps is not a missing candle
        start = times[i] + step
        gaps.append(
            Gap(start.to_pydatetime(), (start + step * (missing - 1)).to_pydatetime(), missing)
        )
    return gaps


def apply_gap_policy(
    frame: pd.DataFrame,
    timeframe: str,
    policy: GapPolicy,
    source: str,
    after: datetime | None = None,
    previous_close: float | None = None,
) -> tuple[pd.DataFrame, list[Gap]]:
    """Return the frame to store (with an is_filled column) and the gaps found."""
    gaps = find_gaps(frame["open_time"], timeframe, after)
    out = frame.copy()
    out["is_filled"] = False
    if not gaps or policy is GapPolicy.KEEP:
        return out, gaps
    if policy is GapPolicy.REJECT:
        raise CandleGapError(source, gaps)
    step = pd.Timedelta(timeframe_delta(timeframe))
    fills = []
    for gap in gaps:
        times = pd.date_range(gap.first_missing, gap.last_missing, freq=step)
        earlier = out[out["open_time"] < times[0]]
        if earlier.empty:
            if previous_close is None:
                raise CandleGapError(source, [gap])  # nothing in the past to carry forward
            close = previous_close
        else:
            close = float(earlier["close"].iloc[-1])
        fills.append(
            pd.DataFrame(
                {
                    "open_time": times,
                    "open": close,
                    "high": close,
                    "low": close,
                    "close": close,
                    "volume": 0.0,
                    "is_filled": True,
                }
            )
        )
    filled = pd.concat([out, *fills], ignore_index=True).sort_values("open_time", kind="stable")
    filled["open_time"] = filled["open_time"].astype("datetime64[ns, UTC]")
    return filled.reset_index(drop=True), gaps
