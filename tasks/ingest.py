"""Ingest tasks: one per (symbol, timeframe) and one per symbol for book and trades."""

from __future__ import annotations

from prefect import task

from services import bootstrap
from services.ingest import (
    IngestReport,
    MicrostructureReport,
    ingest_candles,
    ingest_microstructure,
)
from tasks.retry import IO_RETRIES


@task(name="ingest-candles", task_run_name="ingest-{symbol}-{timeframe}", **IO_RETRIES)
def ingest_symbol(symbol: str, timeframe: str) -> IngestReport:
    settings = bootstrap.get_settings()
    return ingest_candles(
        bootstrap.ledger(settings),
        bootstrap.candle_source(settings),
        symbol,
        timeframe,
        bootstrap.ccxt_since(settings),
        settings.gap_policy,
    )


@task(name="ingest-microstructure", task_run_name="microstructure-{symbol}", **IO_RETRIES)
def ingest_order_book_and_trades(symbol: str) -> MicrostructureReport:
    settings = bootstrap.get_settings()
    return ingest_microstructure(
        bootstrap.ledger(settings),
        bootstrap.market_source(settings),
        symbol,
        settings.order_book_depth,
    )
