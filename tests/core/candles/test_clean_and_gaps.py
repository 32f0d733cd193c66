from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from core.candles.clean import CandleConflictError, order_candles
from core.candles.gaps import CandleGapError, GapPolicy, apply_gap_policy, find_gaps
from infra.market_data.files import read_candle_file

NFI = Path("ohlcv/nfi-binance-spot-2021")
# The shared README's real Binance maintenance gaps: (last candle before, missing count).
KNOWN_GAPS = [
    ("2020-12-21 14:00", 3),
    ("2020-12-25 01:00", 1),
    ("2021-02-11 03:00", 1),
    ("2021-03-06 01:00", 1),
    ("2021-04-20 01:00", 2),
    ("2021-04-25 04:00", 3),
]


@pytest.fixture(scope="module")
def nfi_btc(shared_data: Path) -> pd.DataFrame:
    return read_candle_file(shared_data / NFI / "BTC_USDT-1h.json")


def test_order_when_shuffled_with_identical_repeats_then_sorted_and_deduplicated(
    btc_1h: pd.DataFrame,
) -> None:
    chunk = btc_1h.head(50)
    messy = pd.concat([chunk.iloc[25:], chunk.iloc[:30], chunk.iloc[10:12]])
    out, dropped = order_candles(messy, "x")
    pd.testing.assert_frame_equal(out, chunk.reset_index(drop=True))
    assert dropped == 7


def test_order_when_same_time_different_values_then_conflict_reported(btc_1h: pd.DataFrame) -> None:
    chunk = btc_1h.head(20)
    other = chunk.iloc[[5]].copy()
    other["close"] += 1.0
    with pytest.raises(CandleConflictError, match="1 open time") as err:
        order_candles(pd.concat([chunk, other]), "feed")
    assert len(err.value.conflicts) == 2
    assert "2024-01-01T05:00:00+00:00" in str(err.value)


@pytest.mark.parametrize("pair", ["BTC_USDT", "ETH_USDT", "ADA_USDT", "SOL_USDT"])
def test_find_gaps_when_real_2021_files_then_the_eleven_known_missing_candles(
    shared_data: Path, pair: str
) -> None:
    frame = read_candle_file(shared_data / NFI / f"{pair}-1h.json")
    gaps = find_gaps(frame["open_time"], "1h")
    assert [(g.first_missing, g.missing) for g in gaps] == [
        (pd.Timestamp(t, tz="UTC") + pd.Timedelta(hours=1), n) for t, n in KNOWN_GAPS
    ]
    assert sum(g.missing for g in gaps) == 11


def test_gap_policy_when_keep_then_rows_unchanged_and_gaps_reported(nfi_btc: pd.DataFrame) -> None:
    out, gaps = apply_gap_policy(nfi_btc, "1h", GapPolicy.KEEP, "nfi")
    assert len(out) == len(nfi_btc) == 5482
    assert not out["is_filled"].any()
    assert len(gaps) == 6


def test_gap_policy_when_ffill_then_flat_flagged_candles_at_previous_close(
    nfi_btc: pd.DataFrame,
) -> None:
    out, _ = apply_gap_policy(nfi_btc, "1h", GapPolicy.FFILL, "nfi")
    assert len(out) == 5482 + 11
    assert out["open_time"].diff().dropna().eq(pd.Timedelta(hours=1)).all()  # a full grid
    filled = out[out["is_filled"]]
    assert len(filled) == 11
    before = nfi_btc.set_index("open_time")["close"]
    first = filled.iloc[0]
    assert first["open_time"] == pd.Timestamp("2020-12-21 15:00", tz="UTC")
    assert first["open"] == first["close"] == before[pd.Timestamp("2020-12-21 14:00", tz="UTC")]
    assert (filled["volume"] == 0).all()
    # The real zero-volume candles just before two gaps stay real, not flagged.
    zero_real = out[(out["volume"] == 0) & ~out["is_filled"]]["open_time"].dt.strftime(
        "%Y-%m-%d %H:%M"
    )
    assert list(zero_real) == ["2020-12-21 14:00", "2021-02-11 03:00"]


def test_gap_policy_when_reject_then_error_names_source_and_first_gap(
    nfi_btc: pd.DataFrame,
) -> None:
    with pytest.raises(
        CandleGapError, match=r"11 missing candle\(s\) in 6 gap\(s\).*2020-12-21T15:00"
    ):
        apply_gap_policy(nfi_btc, "1h", GapPolicy.REJECT, "BTC_USDT-1h.json")


def test_find_gaps_when_after_last_stored_then_leading_gap_found(btc_1h: pd.DataFrame) -> None:
    stored_last = datetime(2023, 12, 31, 21, tzinfo=UTC)
    gaps = find_gaps(btc_1h["open_time"].head(5), "1h", after=stored_last)
    assert [(g.first_missing, g.missing) for g in gaps] == [
        (datetime(2023, 12, 31, 22, tzinfo=UTC), 2)
    ]
