"""The memory ledger records each decision once, holding a bit per candle instead of every id:
the same answers as a set of the ids, whatever the order and the gaps."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from core.decision import Decision
from core.types import DecisionId
from infra.ledger.memory import DecidedCandles, MemoryOrders

STEP = 300  # 5m
ORIGIN = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(-50, 5_000).map(lambda slot: ORIGIN + slot * STEP),  # on the grid
            st.integers(ORIGIN - 10_000, ORIGIN + 10_000),  # anywhere, off it too
        ),
        max_size=300,
    )
)
def test_add_when_times_come_in_any_order_then_answers_as_a_set_would(times: list[int]) -> None:
    decided, seen = DecidedCandles(ORIGIN, STEP), set()
    for t in times:
        assert decided.add(t) == (t not in seen)
        seen.add(t)


_TIMES = st.lists(
    st.one_of(
        st.integers(-50, 5_000).map(lambda slot: ORIGIN + slot * STEP),
        st.integers(ORIGIN - 10_000, ORIGIN + 10_000),
    ),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_TIMES, max_size=5))
def test_add_many_when_chunks_come_in_any_order_then_answers_as_add_one_at_a_time(
    chunks: list[list[int]],
) -> None:
    many, one = DecidedCandles(ORIGIN, STEP), DecidedCandles(ORIGIN, STEP)
    for chunk in chunks:
        expected = [one.add(t) for t in chunk]  # repeats within a chunk included
        assert many.add_many(np.array(chunk, dtype=np.int64)).tolist() == expected


def test_record_decision_when_recorded_twice_then_refused_the_second_time(
    decisions: list[Decision],
) -> None:
    orders = MemoryOrders()
    assert all(orders.record_decision(d, "simulated") for d in decisions)
    assert not any(orders.record_decision(d, "simulated") for d in decisions)
    assert len(orders.decisions_made) == len(decisions)


def test_record_decision_when_the_id_is_not_made_from_the_candle_then_kept_by_id(
    decisions: list[Decision],
) -> None:
    orders = MemoryOrders()
    first = decisions[0]
    odd = replace(first, decision_id=DecisionId("x1"))
    assert orders.record_decision(odd, "simulated")
    assert not orders.record_decision(odd, "simulated")
    assert orders.record_decision(first, "simulated")  # its own id is another decision


def test_decided_candles_when_a_week_of_5m_is_recorded_then_a_few_hundred_bytes_are_held() -> None:
    decided = DecidedCandles(ORIGIN, STEP)
    week = pd.date_range("2024-01-01", periods=7 * 288, freq="5min", tz="UTC")
    for t in week:
        assert decided.add(int(t.timestamp()))
    assert len(decided._bits) <= 2 * len(week) // 8 + 1
