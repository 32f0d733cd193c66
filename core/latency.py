"""Latency histograms as the ledger counts them: fixed upper bounds, cumulative counts and the
sum of what was observed, the shape a Prometheus histogram exports. The bounds live here so the
ledger's query and the API's live histogram bucket alike (series of one metric with different
bounds cannot be aggregated)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from core.errors import FatalError

# Candle close -> decision recorded, in seconds: a scheduled run decides seconds after the
# close, an LLM panel adds tens of seconds, a run catching up after a pause hours.
DECISION_LATENCY_BOUNDS: tuple[float, ...] = (
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0,
)  # fmt: skip
# One prediction's share of a model call, in seconds: a tree ensemble answers a row in well
# under a millisecond inside a batch; a cold call or a sequence model takes tenths.
PREDICT_BOUNDS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


class InvalidHistogram(FatalError, ValueError):
    pass


@dataclass(frozen=True, slots=True)
class LatencyHistogram:
    """`cumulative[i]` observations were <= `bounds[i]`; `count` in all (the +Inf bucket)."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    count: int
    total: float  # the sum of the observations, in seconds

    def __post_init__(self) -> None:
        if len(self.cumulative) != len(self.bounds):
            raise InvalidHistogram(f"{len(self.cumulative)} counts for {len(self.bounds)} bounds")
        if any(lower >= upper for lower, upper in pairwise(self.bounds)):
            raise InvalidHistogram(f"bounds not increasing: {self.bounds}")
        counts = (0, *self.cumulative, self.count)
        if any(fewer > more for fewer, more in pairwise(counts)):
            raise InvalidHistogram(f"counts not cumulative: {counts[1:]}")

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> LatencyHistogram:
        return cls(bounds, (0,) * len(bounds), 0, 0.0)

    @classmethod
    def of(cls, bounds: tuple[float, ...], observed: Sequence[float]) -> LatencyHistogram:
        """From the observations themselves (what the ledger's query counts in SQL)."""
        cumulative = tuple(sum(1 for x in observed if x <= b) for b in bounds)
        return cls(bounds, cumulative, len(observed), math.fsum(observed))
