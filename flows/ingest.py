from __future__ import annotations

from itertools import product

from prefect import flow, get_run_logger

from core.errors import FatalError
from services import bootstrap
from services.ingest import IngestReport
from tasks.ingest import ingest_order_book_and_trades, ingest_symbol
from tasks.reporting import publish_ingest


class IngestFailed(FatalError):
    """Some (symbol, timeframe) pairs failed; the others were stored."""


@flow(name="ingest")
def ingest(
    symbols: list[str] | None = None, timeframes: list[str] | None = None
) -> list[IngestReport]:
    """Every (symbol, timeframe) pair as its own mapped task, so one bad pair fails alone; when
    the source is live, an order-book snapshot and recent public trades per symbol as well."""
    settings = bootstrap.get_settings()
    wanted_symbols = symbols or list(settings.symbols)
    wanted_timeframes = timeframes or list(settings.ingest_timeframes)
    pairs = list(product(wanted_symbols, wanted_timeframes))
    futures = ingest_symbol.map([s for s, _ in pairs], [t for _, t in pairs])
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
            get_run_logger().info(
                "%s: order book %d levels at %s, %d new public trades",
                symbol, book.book_levels, book.book_time, book.trades_new,
            )  # fmt: skip
        else:
            failures.append(f"{symbol} order book/trades: {future.state.message}")
    publish_ingest(reports, failures)
    if failures:
        stored = ", ".join(f"{r.symbol} {r.timeframe}" for r in reports) or "none"
        raise IngestFailed(
            f"{len(failures)} of {len(pairs) + len(book_futures)} ingest tasks failed "
            f"(stored: {stored}); " + "; ".join(failures)
        )
    return reports
