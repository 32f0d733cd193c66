from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.candles.schema import CandleValidationError, validate_candles


def test_validate_when_real_binance_candles_then_returns_frame_unchanged(
    btc_1h: pd.DataFrame,
) -> None:
    out = validate_candles(btc_1h, "btc")
    pd.testing.assert_frame_equal(out, btc_1h)


@pytest.mark.parametrize(
    ("column", "row", "value", "check"),
    [
        ("high", 5, 1.0, "high >= max(open, close)"),
        ("low", 7, 1e9, "low <= min(open, close)"),
        ("volume", 9, -1.0, "volume: greater_than_or_equal_to(0)"),
        ("close", 11, np.nan, "close: not_nullable"),
    ],
)
def test_validate_when_one_bad_value_then_error_names_source_check_and_row(
    btc_1h: pd.DataFrame, column: str, row: int, value: float, check: str
) -> None:
    bad = btc_1h.head(50).copy()
    bad.loc[row, column] = value
    with pytest.raises(CandleValidationError) as err:
        validate_candles(bad, "BTC_USDT-1h.feather")
    assert err.value.check == check
    assert err.value.source == "BTC_USDT-1h.feather"
    assert err.value.first_bad_row is not None
    assert err.value.first_bad_row["row"] == row
    assert "BTC_USDT-1h.feather" in str(err.value)


def test_validate_when_duplicate_open_time_then_rejects_with_row(btc_1h: pd.DataFrame) -> None:
    bad = btc_1h.head(20).copy()
    bad.loc[8, "open_time"] = bad.loc[7, "open_time"]
    with pytest.raises(CandleValidationError, match="strictly increasing and unique") as err:
        validate_candles(bad, "x")
    assert err.value.first_bad_row is not None
    assert err.value.first_bad_row["row"] == 8


def test_validate_when_out_of_order_then_rejects(btc_1h: pd.DataFrame) -> None:
    bad = btc_1h.head(20).iloc[[0, 2, 1, 3]].reset_index(drop=True)
    with pytest.raises(CandleValidationError, match="strictly increasing"):
        validate_candles(bad, "x")


def test_validate_when_naive_timestamps_then_rejects(btc_1h: pd.DataFrame) -> None:
    bad = btc_1h.head(5).copy()
    bad["open_time"] = bad["open_time"].dt.tz_localize(None)
    with pytest.raises(CandleValidationError, match="open_time"):
        validate_candles(bad, "x")


def test_validate_when_empty_then_says_no_candles() -> None:
    empty = pd.DataFrame(columns=["open_time", "open", "high", "low", "close", "volume"])
    with pytest.raises(CandleValidationError, match="no candles"):
        validate_candles(empty, "x")
