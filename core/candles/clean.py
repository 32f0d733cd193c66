"""Put a source's raw candles in order: sort, drop identical repeats, refuse conflicting ones."""

from __future__ import annotations

import pandas as pd

from core.candles.schema import CANDLE_COLUMNS
from core.errors import FatalError

_VALUES = list(CANDLE_COLUMNS[1:])


class CandleConflictError(FatalError, ValueError):
    """The same open time arrived twice with different values: nothing is stored."""

    def __init__(self, source: str, conflicts: pd.DataFrame) -> None:
        self.source = source
        self.conflicts = conflicts
        times = conflicts["open_time"].drop_duplicates()
        first = conflicts[conflicts["open_time"] == times.iloc[0]]
        rows = first[list(CANDLE_COLUMNS)].to_dict("records")
        super().__init__(
            f"{source}: {len(times)} open time(s) with conflicting candles; first at "
            f"{times.iloc[0].isoformat()}: {rows}"
        )


def order_candles(frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, int]:
    """Sort by open time and drop exact duplicates; return the frame and how many were dropped.

    Raises CandleConflictError when one open time carries different values.
    """
    ordered = frame.sort_values("open_time", kind="stable")
    unique = ordered.drop_duplicates(subset=list(CANDLE_COLUMNS))
    clashing = unique["open_time"].duplicated(keep=False)
    if clashing.any():
        raise CandleConflictError(source, unique[clashing])
    return unique.reset_index(drop=True), len(frame) - len(unique)
