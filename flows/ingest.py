from __future__ import annotations

from itertools import product

from prefect import flow

from infra.jobs.ingest import IngestReport
from infra.settings import get_settings
from tasks.ingest import ingest_candles, ingest_order_book_and_trades


class IngestFailed(RuntimeError):
    """Some (symbol, timeframe) pairs failed; the others were stored."""


@flow(name="ingest", log_prints=True)
def ingest(
    symbols: list[str] | None = None, timeframes: list[str] | None = None
) -> list[IngestReport]:
    """Every (symbol, timeframe) pair as its own mapped task, so one bad pair fails alone; when
    the source is live, an order-book snapshot and recent public trades per symbol as well."""
    settings = get_settings()
    wanted_symbols = symbols or list(settings.symbols)
    wanted_timeframes = timeframes or list(settings.ingest_timeframes)
    pairs = list(product(wanted_symbols, wanted_timeframes))
    futures = ingest_candles.map([s for s, _ in pairs], [t for _, t in pairs])
    book_futures = []
    if settings.source == "ccxt" and settings.order_book_depth > 0:
        book_futures = list(
            zip(wanted_symbols, ingest_order_book_and_trades.map(wanted_symbols), strict=True)
        )
    reports: list[IngestReport] = []
    failures: list[str] = []
    for (symbol, timeframe), future in zip(pairs, futures, strict=True):
        future.wait()
        if future.state.is_completed():
            reports.append(future.result())
        else:
            failures.append(f"{symbol} {timeframe}: {future.state.message}")
    for symbol, future in book_futures:
        future.wait()
        if future.state.is_completed():
            book = future.result()
            print(
                f"{symbol}: order book {book.book_levels} levels at {book.book_time}, "
                f"{book.trades_new} new public trades"
            )
        else:
            failures.append(f"{symbol} order book/trades: {future.state.message}")
    if failures:
        stored = ", ".join(f"{r.symbol} {r.timeframe}" for r in reports) or "none"
        raise IngestFailed(
            f"{len(failures)} of {len(pairs) + len(book_futures)} ingest tasks failed "
            f"(stored: {stored}); " + "; ".join(failures)
        )
    return reports
