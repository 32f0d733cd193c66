"""A candle's row from its open time: computed on the regular grid, searched off it; the same
answers as a dict of every time, whatever the gaps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.decide.batch import Positions

STEP = 300_000_000_000  # 5 minutes in ns


@st.composite
def open_times(draw: st.DrawFn) -> list[int]:
    """Ascending times on a 5-minute grid with random gaps (and sometimes an off-grid one)."""
    start = draw(st.integers(0, 10**12)) * 1_000
    offsets = sorted(set(draw(st.lists(st.integers(0, 400), max_size=120))))
    times = [start + k * STEP for k in offsets]
    if times and draw(st.booleans()):
        times.append(times[-1] + STEP // 3)  # a candle off the grid
    return times


@given(open_times(), st.lists(st.integers(-2 * STEP, 500 * STEP), max_size=20))
def test_get_when_any_times_then_the_same_rows_as_a_dict(
    times: list[int], probes: list[int]
) -> None:
    positions = Positions(np.array(times, dtype="int64"))
    rows = {t: i for i, t in enumerate(times)}
    start = times[0] if times else 0
    for t in [*times, *(start + p for p in probes)]:
        assert positions.get(t) == rows.get(t)
        assert (t in positions) == (t in rows)


def test_getitem_when_not_a_candle_then_key_error() -> None:
    positions = Positions(np.array([0, STEP, 3 * STEP], dtype="int64"))
    assert positions[3 * STEP] == 2  # past a gap
    with pytest.raises(KeyError):
        positions[2 * STEP]
