from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import ccxt
import pandas as pd
import pytest

from core.candles.schema import CandleValidationError
from core.clock import FakeClock
from infra.exchange_errors import FatalExchangeError, RetryableExchangeError
from infra.jobs.ingest import ingest_exchange, ingest_file
from infra.ledger.repository import Ledger
from infra.market_data.ccxt_source import CcxtCandleSource
from infra.market_data.files import CandleFileError, candle_file_for, read_candle_file
from tests.infra.market_data.recorded_binance import RecordedBinance

FT = Path("ohlcv/freqtrade-testdata")


@pytest.mark.parametrize(
    ("relative", "rows"),
    [
        ("ohlcv/genetrader-binance-spot-2024/BTC_USDT-1h.feather", 5980),
        ("ohlcv/nfi-binance-spot-2021/BTC_USDT-1h.json", 5482),
        (FT / "UNITTEST_BTC-8m.json.gz", 13681),
        (FT / "ETH_BTC-5m.feather", 5760),
        ("ohlcv/nautilus-testdata/btc-perp-20211231-20220201_1m.csv", 45031),
    ],
)
def test_read_candle_file_when_real_formats_then_validated_frame(
    shared_data: Path, relative: str, rows: int
) -> None:
    frame = read_candle_file(shared_data / relative)
    assert len(frame) == rows
    assert str(frame["open_time"].dtype) == "datetime64[ns, UTC]"


@pytest.mark.parametrize("name", ["NOPAIR_XXX-4m.json", "UNITTEST_BTC-8m.feather"])
def test_read_candle_file_when_empty_then_no_candles_error(shared_data: Path, name: str) -> None:
    with pytest.raises(CandleValidationError, match="no candles"):
        read_candle_file(shared_data / FT / name)


def test_read_candle_file_when_not_candles_then_error_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "BTC_USDT-1h.json"
    bad.write_text('{"not": "rows"}')
    with pytest.raises(CandleFileError, match=re.escape("BTC_USDT-1h.json")):
        read_candle_file(bad)


def test_candle_file_for_when_missing_then_lists_what_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(CandleFileError, match=re.escape("BTC_USDT-1h.feather")):
        candle_file_for(tmp_path, "BTC/USDT", "1h")


def test_ingest_file_when_one_bad_row_then_error_names_file_row_and_nothing_stored(
    ledger: Ledger, tmp_path: Path, btc_1h: pd.DataFrame
) -> None:
    bad = btc_1h.head(500).rename(columns={"open_time": "date"})
    bad.loc[321, "high"] = bad.loc[321, "low"] / 2
    bad.to_feather(tmp_path / "BTC_USDT-1h.feather")
    with pytest.raises(CandleValidationError) as err:
        ingest_file(ledger, "binance", tmp_path, "BTC/USDT", "1h")
    assert "BTC_USDT-1h.feather" in str(err.value)
    assert err.value.first_bad_row["row"] == 321
    assert ledger.count_candles("binance", "BTC/USDT", "1h") == 0


def test_ingest_file_when_run_twice_then_same_rows(
    ledger: Ledger, shared_data: Path, tmp_path: Path
) -> None:
    shutil.copy(shared_data / "ohlcv/genetrader-binance-spot-2024/ETH_USDT-1h.feather", tmp_path)
    first = ingest_file(ledger, "binance", tmp_path, "ETH/USDT", "1h")
    second = ingest_file(ledger, "binance", tmp_path, "ETH/USDT", "1h")
    assert (first.inserted, second.inserted, second.stored) == (5980, 0, 5980)


# -- ccxt ------------------------------------------------------------------------------------
@pytest.fixture
def window(btc_1h: pd.DataFrame) -> pd.DataFrame:
    return btc_1h.head(2500).reset_index(drop=True)


def clock_during(frame: pd.DataFrame, row: int, minutes: int = 30) -> FakeClock:
    """A clock inside candle `row`: that candle is still open."""
    return FakeClock(frame["open_time"].iloc[row].to_pydatetime() + timedelta(minutes=minutes))


def test_ccxt_fetch_when_three_pages_then_stitched_without_gaps_and_open_candle_dropped(
    window: pd.DataFrame,
) -> None:
    ex = RecordedBinance({"BTC/USDT": window})
    src = CcxtCandleSource(ex, clock_during(window, 2400), page_limit=1000)
    out = src.fetch("BTC/USDT", "1h", window["open_time"].iloc[0].to_pydatetime())
    assert len(ex.requests) == 3
    pd.testing.assert_frame_equal(out, window.head(2400))  # candle 2400 is open: not returned


def test_ccxt_ingest_when_resumed_then_continues_after_last_stored_candle(
    ledger: Ledger, window: pd.DataFrame
) -> None:
    ex = RecordedBinance({"BTC/USDT": window})
    since = window["open_time"].iloc[0].to_pydatetime()
    first = ingest_exchange(
        ledger, CcxtCandleSource(ex, clock_during(window, 1200)), "BTC/USDT", "1h", since
    )
    assert (first.inserted, first.stored) == (1200, 1200)
    ex.requests.clear()
    second = ingest_exchange(
        ledger, CcxtCandleSource(ex, clock_during(window, 2000)), "BTC/USDT", "1h", since
    )
    assert int(ex.requests[0]["startTime"]) == int(window["open_time"].iloc[1200].value // 10**6)
    assert (second.inserted, second.stored) == (800, 2000)
    pd.testing.assert_frame_equal(
        ledger.load_candles("binance", "BTC/USDT", "1h"), window.head(2000)
    )


def test_ccxt_fetch_when_429_then_retryable_error_and_nothing_returned(
    window: pd.DataFrame,
) -> None:
    def rate_limited(n: int, url: str) -> None:
        ex.handle_http_status_code(429, "Too Many Requests", url, "GET", "")

    ex = RecordedBinance({"BTC/USDT": window}, fault=rate_limited)
    with pytest.raises(RetryableExchangeError, match="fetch_ohlcv BTC/USDT 1h"):
        CcxtCandleSource(ex, clock_during(window, 100)).fetch(
            "BTC/USDT", "1h", window["open_time"].iloc[0].to_pydatetime()
        )


def test_ccxt_fetch_when_network_down_on_second_page_then_retryable_and_ledger_untouched(
    ledger: Ledger, window: pd.DataFrame
) -> None:
    def drop_second(n: int, url: str) -> None:
        if n == 2:
            raise ccxt.NetworkError("binance GET " + url + " connection reset")

    ex = RecordedBinance({"BTC/USDT": window}, fault=drop_second)
    with pytest.raises(RetryableExchangeError):
        ingest_exchange(
            ledger,
            CcxtCandleSource(ex, clock_during(window, 2400)),
            "BTC/USDT",
            "1h",
            window["open_time"].iloc[0].to_pydatetime(),
        )
    assert ledger.count_candles("binance", "BTC/USDT", "1h") == 0


def test_ccxt_fetch_when_unknown_symbol_then_fatal_error_naming_it(window: pd.DataFrame) -> None:
    ex = RecordedBinance({"BTC/USDT": window})
    with pytest.raises(FatalExchangeError, match=r"BadSymbol.*NOPE/USDT"):
        CcxtCandleSource(ex, clock_during(window, 10)).fetch(
            "NOPE/USDT", "1h", window["open_time"].iloc[0].to_pydatetime()
        )


def test_ccxt_fetch_when_nothing_closed_yet_then_empty_frame(window: pd.DataFrame) -> None:
    ex = RecordedBinance({"BTC/USDT": window})
    out = CcxtCandleSource(ex, clock_during(window, 0)).fetch(
        "BTC/USDT", "1h", window["open_time"].iloc[0].to_pydatetime()
    )
    assert out.empty
