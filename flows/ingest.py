from __future__ import annotations

from itertools import product

from prefect import flow, get_run_logger

from core.errors import FatalError
from flows.run_logs import set_up_logs
from services import bootstrap
from services.ingest import IngestReport
from tasks.futures import wait_all
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
    set_up_logs()
    settings = bootstrap.get_settings()
    wanted_symbols = symbols or list(settings.symbols)
    wanted_timeframes = timeframes or list(settings.ingest_timeframes)
    pairs = list(product(wanted_symbols, wanted_timeframes))
    candles = ingest_symbol.map([s for s, _ in pairs], [t for _, t in pairs])
    live = settings.source == "ccxt" and settings.order_book_depth > 0
    book_symbols = wanted_symbols if live else []
    books = ingest_order_book_and_trades.map(book_symbols) if book_symbols else []
    reports, failures = wait_all(
        [(f"{s} {t}", future) for (s, t), future in zip(pairs, candles, strict=True)]
    )
    snapshots, book_failures = wait_all(
        [(f"{s} order book/trades", future) for s, future in zip(book_symbols, books, strict=True)]
    )
    failures += book_failures
    for book in snapshots:
        get_run_logger().info(
            "%s: order book %d levels at %s, %d new public trades",
            book.symbol, book.book_levels, book.book_time, book.trades_new,
        )  # fmt: skip
    publish_ingest(reports, failures)
    if failures:
        stored = ", ".join(f"{r.symbol} {r.timeframe}" for r in reports) or "none"
        raise IngestFailed(
            f"{len(failures)} of {len(pairs) + len(book_symbols)} ingest tasks failed "
            f"(stored: {stored}); " + "; ".join(failures)
        )
    return reports
