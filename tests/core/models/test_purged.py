from __future__ import annotations

from itertools import pairwise

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.models.purged import Fold, FoldError, rows_in, walk_forward_folds

HOUR = pd.Timedelta(hours=1)
T0 = pd.Timestamp("2024-01-01", tz="UTC")


def hourly(n: int) -> pd.DatetimeIndex:
    return pd.date_range(T0, periods=n, freq="h")


def shape(folds: list[Fold]) -> list[tuple[int, list[pd.Timestamp], list[pd.Timestamp]]]:
    return [(f.number, list(f.train), list(f.test)) for f in folds]


@pytest.fixture(scope="module")
def pooled(btc_1h: pd.DataFrame, eth_1h: pd.DataFrame) -> pd.DataFrame:
    """Two real symbols' closes in one frame indexed by open time, as training rows are."""
    parts = [
        pd.DataFrame(
            {"close": c["close"].to_numpy(), "symbol": s},
            index=pd.DatetimeIndex(c["open_time"], name="open_time"),
        ).head(400)
        for s, c in (("BTC/USDT", btc_1h), ("ETH/USDT", eth_1h))
    ]
    return pd.concat(parts).sort_index(kind="stable")


def test_walk_forward_folds_when_ten_hours_two_folds_then_blocks_and_purge_by_hand() -> None:
    t = hourly(10)
    folds = walk_forward_folds(t, n_folds=2, embargo=HOUR, min_train_fraction=0.2)
    assert shape(folds) == [(0, list(t[:1]), list(t[2:6])), (1, list(t[:5]), list(t[6:]))]


def test_walk_forward_folds_when_zero_embargo_then_train_runs_up_to_the_test_block() -> None:
    t = hourly(10)
    folds = walk_forward_folds(t, n_folds=2, embargo=pd.Timedelta(0), min_train_fraction=0.2)
    assert [f.train[-1] for f in folds] == [t[1], t[5]]


def test_walk_forward_folds_when_times_unsorted_and_repeated_then_same_as_distinct() -> None:
    t = hourly(50)
    messy = t[::-1].append(t[10:20])
    assert shape(walk_forward_folds(messy, 3, 2 * HOUR)) == shape(
        walk_forward_folds(t, 3, 2 * HOUR)
    )


def test_walk_forward_folds_when_more_folds_than_test_times_then_fold_error() -> None:
    with pytest.raises(FoldError, match="too few for 8 folds"):
        walk_forward_folds(hourly(10), n_folds=8, embargo=HOUR, min_train_fraction=0.5)


def test_walk_forward_folds_when_embargo_swallows_the_first_train_span_then_fold_error() -> None:
    with pytest.raises(FoldError, match="fold 0: no training time"):
        walk_forward_folds(hourly(100), n_folds=2, embargo=40 * HOUR, min_train_fraction=0.3)


@pytest.mark.parametrize(
    ("n_folds", "embargo", "fraction"),
    [(0, HOUR, 0.3), (2, -HOUR, 0.3), (2, HOUR, 0.0), (2, HOUR, 1.0)],
)
def test_walk_forward_folds_when_arguments_invalid_then_fold_error(
    n_folds: int, embargo: pd.Timedelta, fraction: float
) -> None:
    with pytest.raises(FoldError):
        walk_forward_folds(hourly(100), n_folds, embargo, fraction)


@settings(max_examples=150, deadline=None)
@given(
    gaps=st.lists(st.integers(1, 5), min_size=5, max_size=300),
    n_folds=st.integers(1, 10),
    embargo_hours=st.integers(0, 24),
    fraction=st.floats(0.05, 0.9),
)
def test_walk_forward_folds_when_any_times_then_purged_ordered_disjoint_and_covering(
    gaps: list[int], n_folds: int, embargo_hours: int, fraction: float
) -> None:
    times = pd.DatetimeIndex(T0 + pd.to_timedelta(pd.Series(gaps).cumsum(), unit="h"))
    embargo = embargo_hours * HOUR
    try:
        folds = walk_forward_folds(times, n_folds, embargo, fraction)
    except FoldError:
        # Refusing is right only when a test block would be empty or the first fold (the one
        # with the least history) would have no time left to train on.
        evaluated = times[int(len(times) * fraction) :]
        first_block = evaluated[0] if len(evaluated) else None
        assert len(evaluated) < n_folds or not (times + embargo < first_block).any()
        return
    assert [f.number for f in folds] == list(range(n_folds))
    for fold in folds:
        assert fold.train.max() + embargo < fold.test.min()
        # Exactly the purge rule: every earlier time whose label ends before the test is kept.
        assert fold.train.equals(times[times + embargo < fold.test.min()])
    for earlier, later in pairwise(folds):
        assert earlier.test.max() < later.test.min()
    covered = folds[0].test
    for fold in folds[1:]:
        covered = covered.append(fold.test)
    assert covered.equals(times[int(len(times) * fraction) :])


def test_rows_in_when_real_pooled_rows_then_every_symbol_kept_and_folds_purged(
    pooled: pd.DataFrame,
) -> None:
    embargo = 4 * HOUR
    folds = walk_forward_folds(pooled.index, n_folds=4, embargo=embargo)
    for fold in folds:
        train, test = rows_in(pooled, fold.train), rows_in(pooled, fold.test)
        assert len(train) == 2 * len(fold.train)  # BTC's and ETH's row at each time
        assert len(test) == 2 * len(fold.test)
        assert train.index.max() + embargo < test.index.min()
    scored = pd.concat(rows_in(pooled, f.test) for f in folds)
    assert len(scored) == len(pooled) - 2 * int(400 * 0.3)
