from __future__ import annotations

from prefect import task

from infra import composition
from infra.jobs.ingest import (
    IngestReport,
    MicrostructureReport,
    ingest_exchange,
    ingest_file,
    ingest_microstructure,
)
from infra.settings import get_settings
from tasks.retry import IO_RETRIES


@task(name="ingest-candles", task_run_name="ingest-{symbol}-{timeframe}", **IO_RETRIES)
def ingest_candles(symbol: str, timeframe: str) -> IngestReport:
    settings = get_settings()
    ledger = composition.ledger(settings)
    if settings.source == "ccxt":
        return ingest_exchange(
            ledger,
            composition.market_source(settings),
            symbol,
            timeframe,
            composition.ccxt_since(settings),
            settings.gap_policy,
        )
    return ingest_file(
        ledger, settings.exchange, settings.data_dir, symbol, timeframe, settings.gap_policy
    )


@task(name="ingest-microstructure", task_run_name="microstructure-{symbol}", **IO_RETRIES)
def ingest_order_book_and_trades(symbol: str) -> MicrostructureReport:
    settings = get_settings()
    return ingest_microstructure(
        composition.ledger(settings),
        composition.market_source(settings),
        symbol,
        settings.order_book_depth,
    )
