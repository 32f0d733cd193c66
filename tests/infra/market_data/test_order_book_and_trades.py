"""Order-book snapshots and public trades from ccxt's recorded Binance responses, through ccxt's
own parser, into the ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import ccxt
import pytest

from core.clock import FakeClock
from core.errors import FatalExchangeError, RetryableExchangeError
from core.market.order_book import MarketDataError
from core.types import Side
from infra.ledger.ledger import Ledger
from infra.market_data.ccxt_source import CcxtMarketSource
from services.ingest import ingest_microstructure
from tests.infra.market_data.recorded_binance import RecordedSpotBinance, recorded_spot_cases

NOW = datetime(2024, 3, 13, 11, 5, tzinfo=UTC)
CASES = recorded_spot_cases()


def source(ex: ccxt.Exchange, now: datetime = NOW) -> CcxtMarketSource:
    return CcxtMarketSource(ex, FakeClock(now))


def test_order_book_when_recorded_binance_depth_then_parsed_as_ccxt_expects() -> None:
    ex = RecordedSpotBinance()
    symbol, depth = CASES["fetchOrderBook"]["input"]

    book = source(ex).order_book(symbol, depth)

    expected = CASES["fetchOrderBook"]["parsed"]
    assert [[float(p), float(a)] for p, a in book.bids] == expected["bids"]
    assert [[float(p), float(a)] for p, a in book.asks] == expected["asks"]
    assert book.nonce == expected["nonce"]
    assert book.taken_at == NOW  # Binance spot depth has no timestamp: the receive time stands in
    assert book.best_bid == Decimal("42574.3")
    assert "depth?symbol=BTCUSDT&limit=2" in ex.calls[0][1]


def test_trades_when_recorded_binance_agg_trades_then_parsed_as_ccxt_expects() -> None:
    ex = RecordedSpotBinance()
    [trade] = source(ex).trades("BTC/USDT", since=None, limit=1)

    [expected] = CASES["fetchTrades"]["parsed"]
    assert trade.trade_id == expected["id"]
    assert trade.traded_at == datetime.fromtimestamp(expected["timestamp"] / 1000, tz=UTC)
    assert trade.side is Side.BUY
    assert (trade.price, trade.amount) == (Decimal("73238.7"), Decimal("0.00109"))


def test_trades_when_resuming_then_asks_from_just_after_the_last_stored_trade() -> None:
    ex = RecordedSpotBinance()
    last = datetime(2024, 3, 13, 11, 0, tzinfo=UTC)
    source(ex).trades("BTC/USDT", since=last)
    assert f"startTime={int(last.timestamp() * 1000) + 1}" in ex.calls[0][1]


def test_ingest_microstructure_when_run_twice_then_book_per_moment_and_each_trade_once(
    ledger: Ledger,
) -> None:
    ex = RecordedSpotBinance()
    first = ingest_microstructure(ledger, source(ex), "BTC/USDT", 2)
    again = ingest_microstructure(ledger, source(ex), "BTC/USDT", 2)  # same moment: skipped
    later = ingest_microstructure(ledger, source(ex, NOW + timedelta(minutes=1)), "BTC/USDT", 2)

    assert (first.book_levels, first.trades_new) == (4, 1)
    # ccxt itself drops trades before `since`; the unique key is the second line of defence.
    assert (again.trades_received, again.trades_new) == (0, 0)
    assert later.trades_new == 0
    store = ledger.microstructure
    books = store.order_books(
        "binance", "BTC/USDT", NOW - timedelta(hours=1), NOW + timedelta(hours=1)
    )
    assert [b.taken_at for b in books] == [NOW, NOW + timedelta(minutes=1)]
    assert books[0].bids == (
        (Decimal("42574.3"), Decimal("0.0107")),
        (Decimal("42574.2"), Decimal("0.00646")),
    )
    assert books[0].asks[1] == (Decimal("42574.8"), Decimal("0.00893"))
    assert books[0].nonce == 25445101
    assert store.count_trades("binance", "BTC/USDT") == 1
    assert store.last_trade_time("binance", "BTC/USDT") == datetime(
        2024, 3, 13, 11, 1, 1, 939000, tzinfo=UTC
    )


def test_record_trades_when_same_trades_again_then_stored_once(ledger: Ledger) -> None:
    trades = source(RecordedSpotBinance()).trades("BTC/USDT", since=None)
    assert ledger.microstructure.record_trades(trades) == 1
    assert ledger.microstructure.record_trades(trades) == 0
    assert ledger.microstructure.count_trades("binance", "BTC/USDT") == 1


def test_ingest_microstructure_when_book_crossed_then_refused_and_nothing_stored(
    ledger: Ledger,
) -> None:
    crossed = {
        "lastUpdateId": "1",
        "bids": [["42575.00000000", "0.1"], ["42574.20000000", "0.2"]],
        "asks": [["42574.31000000", "0.1"], ["42574.80000000", "0.2"]],
    }
    ex = RecordedSpotBinance(answers={"fetchOrderBook": crossed})
    with pytest.raises(
        MarketDataError, match=r"fetch_order_book BTC/USDT.*best bid below best ask"
    ):
        ingest_microstructure(ledger, source(ex), "BTC/USDT", 2)
    assert (
        ledger.microstructure.order_books("binance", "BTC/USDT", NOW - timedelta(days=1), NOW) == []
    )
    assert ledger.microstructure.count_trades("binance", "BTC/USDT") == 0


@pytest.mark.parametrize(
    ("bids", "check"),
    [
        # ccxt sorts each side itself; a repeated price level still gets through it.
        ([["42574.30000000", "0.1"], ["42574.30000000", "0.2"]], "bids strictly descending"),
        ([["42574.30000000", "0"], ["42574.20000000", "0.2"]], r"greater_than\(0\)"),
        ([], "both sides present"),
    ],
)
def test_order_book_when_malformed_then_error_names_the_check(
    bids: list[list[str]], check: str
) -> None:
    book = {"lastUpdateId": "1", "bids": bids, "asks": [["42574.31", "0.1"]]}
    ex = RecordedSpotBinance(answers={"fetchOrderBook": book})
    with pytest.raises(MarketDataError, match=check):
        source(ex).order_book("BTC/USDT", 5)


def test_ingest_microstructure_when_a_trade_is_malformed_then_batch_refused_and_nothing_stored(
    ledger: Ledger,
) -> None:
    good = CASES["fetchTrades"]["httpResponse"][0]
    bad = good | {"a": "2913537568", "p": "0.00000000"}
    ex = RecordedSpotBinance(answers={"fetchTrades": [good, bad]})
    with pytest.raises(MarketDataError, match=r"fetch_trades BTC/USDT.*1 row.*2913537568"):
        ingest_microstructure(ledger, source(ex), "BTC/USDT", 2)
    assert ledger.microstructure.count_trades("binance", "BTC/USDT") == 0
    assert (
        ledger.microstructure.order_books("binance", "BTC/USDT", NOW - timedelta(days=1), NOW) == []
    )


def test_order_book_when_429_then_retryable_error_after_one_call() -> None:
    """The adapter translates, it never retries: Prefect's task retries are the one layer."""

    def once_429(n: int, url: str) -> None:
        if n == 1:
            raise ccxt.RateLimitExceeded("binance 429 Too Many Requests")

    ex = RecordedSpotBinance(fault=once_429)
    with pytest.raises(RetryableExchangeError, match=r"fetch_order_book BTC/USDT.*RateLimit"):
        source(ex).order_book("BTC/USDT", 2)
    assert len(ex.calls) == 1
    assert source(ex).order_book("BTC/USDT", 2).nonce == 25445101  # the retry succeeds


def test_order_book_when_unknown_symbol_then_fatal_error_naming_it() -> None:
    with pytest.raises(FatalExchangeError, match=r"fetch_order_book NOPE/USDT.*BadSymbol"):
        source(RecordedSpotBinance()).order_book("NOPE/USDT", 5)
