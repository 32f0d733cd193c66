from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from core.labels import (
    LabelError,
    TripleBarrier,
    forward_log_return,
    forward_return_label,
    triple_barrier_label,
)

H4 = timedelta(hours=4)


def candles(closes: list[float], highs: list[float] | None = None, lows: list[float] | None = None,
            times: pd.DatetimeIndex | None = None) -> pd.DataFrame:  # fmt: skip
    n = len(closes)
    times = (
        times if times is not None else pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    )
    return pd.DataFrame({
        "open_time": times, "open": closes, "close": closes,
        "high": highs or closes, "low": lows or closes, "volume": [1.0] * n,
    })  # fmt: skip


def test_label_when_horizon_4h_then_compares_close_t_to_close_t_plus_4h(
    btc_1h: pd.DataFrame,
) -> None:
    c = btc_1h.head(200)
    label = forward_return_label(c, H4, 0.003)
    close = c["close"].to_numpy()
    expected = (np.log(close[4:] / close[:-4]) > 0.003).astype(float)
    np.testing.assert_array_equal(label.to_numpy()[:-4], expected)
    assert label.iloc[-4:].isna().all()


def test_label_when_cost_raised_then_fewer_positives(btc_1h: pd.DataFrame) -> None:
    assert (
        forward_return_label(btc_1h, H4, 0.01).mean() < forward_return_label(btc_1h, H4, 0.0).mean()
    )


def test_label_when_a_candle_is_missing_then_labels_spanning_it_are_undefined() -> None:
    """By time, not rows: a gap never makes a label compare with a later candle."""
    times = pd.date_range("2024-01-01", periods=10, freq="1h", tz="UTC").delete(5)
    c = candles([100.0 + i for i in range(9)], times=times)
    label = forward_return_label(c, timedelta(hours=2), 0.0)
    # t=03:00 and 04:00 need 05:00 and 06:00; 05:00 is missing only for 03:00.
    assert np.isnan(label.loc[times[3]])
    assert not np.isnan(label.loc[times[4]])  # 04:00 -> 06:00, both stored
    assert forward_log_return(c, timedelta(hours=2)).notna().sum() == 9 - 2 - 1


def test_label_when_horizon_not_positive_then_label_error(btc_1h: pd.DataFrame) -> None:
    with pytest.raises(LabelError, match="horizon"):
        forward_return_label(btc_1h, timedelta(0), 0.0)


def test_triple_barrier_when_take_profit_touched_first_then_one() -> None:
    c = candles([100, 100, 100, 100], highs=[100, 102, 100, 100], lows=[100, 99.5, 98, 100])
    label = triple_barrier_label(c, timedelta(hours=3), TripleBarrier(0.01, 0.01), 0.0)
    assert label.iloc[0] == 1.0  # +2 % at 01:00 before the -2 % at 02:00


def test_triple_barrier_when_stop_and_take_in_one_candle_then_stop_assumed() -> None:
    c = candles([100, 100, 100, 100], highs=[100, 102, 100, 100], lows=[100, 98, 100, 100])
    label = triple_barrier_label(c, timedelta(hours=3), TripleBarrier(0.01, 0.01), 0.0)
    assert label.iloc[0] == 0.0


def test_triple_barrier_when_no_barrier_touched_then_final_return_against_cost() -> None:
    c = candles([100, 100.2, 100.3, 100.4])
    label = triple_barrier_label(c, timedelta(hours=3), TripleBarrier(0.01, 0.01), 0.003)
    assert label.iloc[0] == 1.0  # log(100.4 / 100) = 0.4 % > 0.3 %
    assert label.iloc[1:].isna().all()  # no full window after them


def test_triple_barrier_when_real_candles_then_labels_defined_and_balanced(
    btc_1h: pd.DataFrame,
) -> None:
    label = triple_barrier_label(
        btc_1h.head(1000), timedelta(hours=8), TripleBarrier(0.01, 0.01), 0.003
    )
    assert label.iloc[:-8].notna().all()
    assert 0.2 < label.mean() < 0.8


def test_triple_barrier_when_barrier_not_positive_then_label_error() -> None:
    with pytest.raises(LabelError):
        TripleBarrier(0.0, 0.01)


def test_touches_filled_when_a_synthetic_candle_lies_ahead_within_the_horizon_then_true() -> None:
    from core.labels import touches_filled

    c = candles([100.0] * 6).assign(is_filled=[False, False, False, True, False, False])
    # With a 2 h horizon, 01:00, 02:00 and 03:00 read the filled 03:00 candle; 00:00 and after
    # it do not.
    assert list(touches_filled(c, timedelta(hours=2))) == [False, True, True, True, False, False]
