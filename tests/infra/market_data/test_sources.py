from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ccxt
import pandas as pd
import pytest

from core.candles.gaps import GapPolicy
from core.candles.schema import CandleValidationError
from core.clock import FakeClock
from core.errors import FatalExchangeError, RetryableExchangeError
from infra.ledger.ledger import Ledger
from infra.market_data.ccxt_source import CcxtMarketSource
from infra.market_data.files import (
    CandleFileError,
    FileCandleSource,
    candle_file_for,
    read_candle_file,
)
from services.ingest import IngestReport, ingest_candles
from tests.conftest import GENETRADER
from tests.core.candles.test_clean_and_gaps import KNOWN_GAPS
from tests.infra.market_data.recorded_binance import RecordedBinance

FT = Path("ohlcv/freqtrade-testdata")
EPOCH = datetime(2017, 1, 1, tzinfo=UTC)


def ingest_file(
    ledger: Ledger,
    exchange: str,
    data_dir: Path,
    symbol: str,
    timeframe: str,
    policy: GapPolicy = GapPolicy.KEEP,
) -> IngestReport:
    return ingest_candles(
        ledger, FileCandleSource(data_dir, exchange), symbol, timeframe, EPOCH, policy
    )


def fetch_all(src: CcxtMarketSource, symbol: str, timeframe: str, since: datetime) -> pd.DataFrame:
    return pd.concat(list(src.fetch(symbol, timeframe, since)), ignore_index=True)


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
    assert ledger.candles.count("binance", "BTC/USDT", "1h") == 0


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


FIXTURES = Path(__file__).parent / "fixtures"


def source(ex: ccxt.Exchange, clock: FakeClock, page_limit: int = 1000) -> CcxtMarketSource:
    return CcxtMarketSource(ex, clock, page_limit=page_limit)


def clock_during(frame: pd.DataFrame, row: int, minutes: int = 30) -> FakeClock:
    """A clock inside candle `row`: that candle is still open."""
    return FakeClock(frame["open_time"].iloc[row].to_pydatetime() + timedelta(minutes=minutes))


def test_ccxt_fetch_when_three_pages_then_stitched_without_gaps_and_open_candle_dropped(
    window: pd.DataFrame,
) -> None:
    ex = RecordedBinance({"BTC/USDT": window})
    src = source(ex, clock_during(window, 2400), page_limit=1000)
    out = fetch_all(src, "BTC/USDT", "1h", window["open_time"].iloc[0].to_pydatetime())
    assert len(ex.requests) == 3
    pd.testing.assert_frame_equal(out, window.head(2400))  # candle 2400 is open: not returned


def test_ccxt_ingest_when_resumed_then_continues_after_last_stored_candle(
    ledger: Ledger, window: pd.DataFrame
) -> None:
    ex = RecordedBinance({"BTC/USDT": window})
    since = window["open_time"].iloc[0].to_pydatetime()
    first = ingest_candles(ledger, source(ex, clock_during(window, 1200)), "BTC/USDT", "1h", since)
    assert (first.inserted, first.stored) == (1200, 1200)
    ex.requests.clear()
    second = ingest_candles(ledger, source(ex, clock_during(window, 2000)), "BTC/USDT", "1h", since)
    assert int(ex.requests[0]["startTime"]) == int(window["open_time"].iloc[1200].value // 10**6)
    assert (second.inserted, second.stored) == (800, 2000)
    stored = ledger.candles.load("binance", "BTC/USDT", "1h").drop(columns="is_filled")
    pd.testing.assert_frame_equal(stored, window.head(2000))


def test_ccxt_fetch_when_429_then_retryable_error_after_one_request(window: pd.DataFrame) -> None:
    """The adapter translates, it never retries: Prefect's task retries are the one layer."""

    def rate_limited_once(n: int, url: str) -> None:
        if n == 2:
            ex.handle_http_status_code(429, "Too Many Requests", url, "GET", "")

    ex = RecordedBinance({"BTC/USDT": window}, fault=rate_limited_once)
    with pytest.raises(RetryableExchangeError, match="fetch_ohlcv BTC/USDT 1h"):
        fetch_all(source(ex, clock_during(window, 2400)), "BTC/USDT", "1h", EPOCH)
    assert len(ex.requests) == 2


def test_ccxt_ingest_when_network_fails_part_way_then_pages_before_kept_and_rerun_resumes(
    ledger: Ledger, window: pd.DataFrame
) -> None:
    failed: list[str] = []

    def down_on_second(n: int, url: str) -> None:
        if n == 2 and not failed:
            failed.append(url)
            raise ccxt.RequestTimeout("binance GET " + url + " timed out")

    ex = RecordedBinance({"BTC/USDT": window}, fault=down_on_second)
    src = source(ex, clock_during(window, 2400))
    since = window["open_time"].iloc[0].to_pydatetime()
    with pytest.raises(RetryableExchangeError, match="RequestTimeout"):
        ingest_candles(ledger, src, "BTC/USDT", "1h", since)
    assert ledger.candles.count("binance", "BTC/USDT", "1h") == 1000  # page 1, validated, kept
    ex.requests.clear()
    again = ingest_candles(ledger, src, "BTC/USDT", "1h", since)  # what a task retry runs
    assert int(ex.requests[0]["startTime"]) == int(window["open_time"].iloc[1000].value // 10**6)
    assert (again.inserted, again.stored) == (1400, 2400)


def test_ccxt_fetch_when_page_empty_then_stops_with_what_it_has(window: pd.DataFrame) -> None:
    ex = RecordedBinance({"BTC/USDT": window.head(1500)})  # the exchange has nothing after 1500
    out = fetch_all(
        source(ex, clock_during(window, 2400)),
        "BTC/USDT",
        "1h",
        window["open_time"].iloc[0].to_pydatetime(),
    )
    assert len(ex.requests) == 3  # 1000, 500, then an empty page
    pd.testing.assert_frame_equal(out, window.head(1500))


def test_ccxt_fetch_when_ccxt_recorded_binance_response_then_parsed_as_ccxt_expects() -> None:
    """ccxt's own recorded Binance kline response, through ccxt's own parser."""
    case = json.loads((FIXTURES / "ccxt_binance_fetchOHLCV.json").read_text())
    symbol, timeframe, since_ms, limit = case["input"]

    class Replay(RecordedBinance):
        def fetch(self, url, method="GET", headers=None, body=None):  # type: ignore[no-untyped-def]
            self.requests.append({"url": url})
            return case["httpResponse"] if len(self.requests) == 1 else []

    ex = Replay({symbol: pd.DataFrame()})
    last_ms = case["parsedResponse"][-1][0]
    clock = FakeClock(datetime.fromtimestamp((last_ms + 3_600_000) / 1000, tz=UTC))
    out = fetch_all(
        CcxtMarketSource(ex, clock, page_limit=limit),
        symbol,
        timeframe,
        datetime.fromtimestamp(since_ms / 1000, tz=UTC),
    )
    assert "symbol=BTCUSDT" in ex.requests[0]["url"]
    assert "interval=1h" in ex.requests[0]["url"]
    expected = [[r[0], *map(float, r[1:])] for r in case["parsedResponse"]]
    got = [
        [int(t.value // 10**6), o, h, lo, c, v] for t, o, h, lo, c, v in out.itertuples(index=False)
    ]
    assert got == expected


def test_ccxt_fetch_when_unknown_symbol_then_fatal_error_naming_it(window: pd.DataFrame) -> None:
    ex = RecordedBinance({"BTC/USDT": window})
    with pytest.raises(FatalExchangeError, match=r"BadSymbol.*NOPE/USDT"):
        fetch_all(
            source(ex, clock_during(window, 10)),
            "NOPE/USDT",
            "1h",
            window["open_time"].iloc[0].to_pydatetime(),
        )


def test_ccxt_fetch_when_nothing_closed_yet_then_no_batch(window: pd.DataFrame) -> None:
    ex = RecordedBinance({"BTC/USDT": window})
    out = source(ex, clock_during(window, 0)).fetch(
        "BTC/USDT", "1h", window["open_time"].iloc[0].to_pydatetime()
    )
    assert list(out) == []


# -- every candle file in freqtrade's test data, Binance kline CSV, gap policies -------------
CANDLE_FILES = sorted(
    str(p.relative_to(GENETRADER.parents[1]))
    for p in (GENETRADER.parents[1] / "ohlcv" / "freqtrade-testdata").rglob("*")
    if p.suffix in {".json", ".gz", ".feather"}
    and "trades" not in p.name
    and p.name not in {"pairs.json", "NOPAIR_XXX-4m.json", "UNITTEST_BTC-8m.feather"}
    and "funding_rate" not in p.name
    and "-mark" not in p.name
)


def test_candle_files_when_listed_then_the_freqtrade_set_is_covered() -> None:
    assert len(CANDLE_FILES) >= 20
    assert any(f.endswith(".json.gz") for f in CANDLE_FILES)
    assert any(f.endswith("orderflow/candles.json") for f in CANDLE_FILES)


@pytest.mark.parametrize("relative", CANDLE_FILES)
def test_read_candle_file_when_any_freqtrade_candle_file_then_valid_frame(
    shared_data: Path, relative: str
) -> None:
    frame = read_candle_file(shared_data / relative)
    assert len(frame) > 0
    assert frame["open_time"].is_monotonic_increasing


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("XRP_USDT_USDT-8h-funding_rate.feather", "high >= max(open, close)"),  # rates in open
        ("XRP_USDT_USDT-1h-mark.feather", "volume: not_nullable"),  # mark prices trade nothing
    ],
)
def test_read_candle_file_when_not_trade_candles_then_refused_naming_the_check(
    shared_data: Path, name: str, check: str
) -> None:
    with pytest.raises(CandleValidationError) as err:
        read_candle_file(shared_data / FT / "futures" / name)
    assert err.value.check == check
    assert name in str(err.value)


def test_read_candle_file_when_binance_kline_csv_without_header_then_read(
    shared_data: Path,
) -> None:
    frame = read_candle_file(shared_data / "ohlcv/nautilus-testdata/ADABTC-1m-2021-11-27.csv")
    assert len(frame) == 10
    assert frame["open_time"].iloc[0] == pd.Timestamp("2021-11-27 00:00", tz="UTC")
    assert frame["close"].iloc[0] == 0.00002854


@pytest.mark.parametrize("policy", ["keep", "ffill"])
def test_ingest_file_when_real_2021_gaps_then_gaps_recorded_and_policy_applied(
    ledger: Ledger, shared_data: Path, tmp_path: Path, policy: str
) -> None:
    shutil.copy(shared_data / "ohlcv/nfi-binance-spot-2021/ETH_USDT-1h.json", tmp_path)
    report = ingest_file(ledger, "binance", tmp_path, "ETH/USDT", "1h", GapPolicy(policy))
    assert (report.gaps, report.missing) == (6, 11)
    assert report.filled == (11 if policy == "ffill" else 0)
    assert report.stored == 5482 + report.filled
    gaps = ledger.candles.gaps("binance", "ETH/USDT", "1h")
    assert [(g.missing, g.policy) for g in gaps] == [(n, policy) for _, n in KNOWN_GAPS]
    again = ingest_file(ledger, "binance", tmp_path, "ETH/USDT", "1h", GapPolicy(policy))
    assert again.inserted == 0
    assert len(ledger.candles.gaps("binance", "ETH/USDT", "1h")) == 6


def test_ingest_file_when_reject_policy_and_gaps_then_nothing_stored(
    ledger: Ledger, shared_data: Path, tmp_path: Path
) -> None:
    from core.candles.gaps import CandleGapError

    shutil.copy(shared_data / "ohlcv/nfi-binance-spot-2021/BTC_USDT-1h.json", tmp_path)
    with pytest.raises(CandleGapError):
        ingest_file(ledger, "binance", tmp_path, "BTC/USDT", "1h", GapPolicy.REJECT)
    assert ledger.candles.count("binance", "BTC/USDT", "1h") == 0


def test_upsert_when_candle_conflicts_with_stored_then_refused_and_batch_not_written(
    ledger: Ledger, btc_1h: pd.DataFrame
) -> None:
    from infra.ledger.candles import StoredCandleConflict

    ledger.candles.upsert("binance", "BTC/USDT", "1h", btc_1h.head(10))
    changed = btc_1h.head(20).copy()
    changed.loc[3, "close"] += 5.0
    with pytest.raises(StoredCandleConflict, match="2024-01-01T03:00:00"):
        ledger.candles.upsert("binance", "BTC/USDT", "1h", changed, source="feed")
    assert ledger.candles.count("binance", "BTC/USDT", "1h") == 10  # rows 10..19 not written


def test_upsert_when_real_candle_arrives_for_a_filled_one_then_replaced(
    ledger: Ledger, btc_1h: pd.DataFrame
) -> None:
    from core.candles.gaps import GapPolicy, apply_gap_policy

    holey = btc_1h.head(10).drop(index=[4])
    filled, gaps = apply_gap_policy(holey, "1h", GapPolicy.FFILL, "x")
    ledger.candles.upsert("binance", "BTC/USDT", "1h", filled, gaps, "ffill")
    assert ledger.candles.load("binance", "BTC/USDT", "1h")["is_filled"].sum() == 1
    ledger.candles.upsert("binance", "BTC/USDT", "1h", btc_1h.head(10))
    stored = ledger.candles.load("binance", "BTC/USDT", "1h")
    assert not stored.pop("is_filled").any()
    pd.testing.assert_frame_equal(stored, btc_1h.head(10))
