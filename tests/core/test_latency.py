"""Latency histograms: cumulative counts at fixed bounds, refused when they are not."""

from __future__ import annotations

import pytest

from core.latency import (
    DECISION_LATENCY_BOUNDS,
    PREDICT_BOUNDS,
    InvalidHistogram,
    LatencyHistogram,
)


def test_of_when_observations_given_then_cumulative_counts_at_each_bound() -> None:
    h = LatencyHistogram.of((1.0, 5.0, 10.0), [0.2, 1.0, 7.0, 12.0, 5.0])
    assert (h.cumulative, h.count, h.total) == ((2, 3, 4), 5, 25.2)


def test_empty_when_built_then_zero_everywhere() -> None:
    h = LatencyHistogram.empty(PREDICT_BOUNDS)
    assert (h.cumulative, h.count, h.total) == ((0,) * len(PREDICT_BOUNDS), 0, 0.0)


@pytest.mark.parametrize(
    ("bounds", "cumulative", "count", "match"),
    [
        ((1.0, 2.0), (1,), 1, "1 counts for 2 bounds"),
        ((2.0, 1.0), (0, 0), 0, "bounds not increasing"),
        ((1.0, 1.0), (0, 0), 0, "bounds not increasing"),
        ((1.0, 2.0), (2, 1), 2, "counts not cumulative"),
        ((1.0, 2.0), (1, 2), 1, "counts not cumulative"),
        ((1.0, 2.0), (-1, 0), 0, "counts not cumulative"),
    ],
)
def test_init_when_counts_or_bounds_inconsistent_then_invalid_histogram(
    bounds: tuple[float, ...], cumulative: tuple[int, ...], count: int, match: str
) -> None:
    with pytest.raises(InvalidHistogram, match=match):
        LatencyHistogram(bounds, cumulative, count, 0.0)


def test_bounds_when_defined_then_increasing() -> None:
    for bounds in (DECISION_LATENCY_BOUNDS, PREDICT_BOUNDS):
        LatencyHistogram.empty(bounds)  # raises if not
