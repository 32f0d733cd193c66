from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from infra import composition
from infra.jobs.ingest import (
    IngestReport,
    MicrostructureReport,
    ingest_exchange,
    ingest_file,
    ingest_microstructure,
)
from infra.settings import get_settings
from tasks.retry import only_retryable


@task(
    name="ingest-candles",
    task_run_name="ingest-{symbol}-{timeframe}",
    retries=3,
    retry_delay_seconds=[2, 5, 15],
    retry_jitter_factor=0.5,
    retry_condition_fn=only_retryable,
    cache_policy=NO_CACHE,
)
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


@task(
    name="ingest-microstructure",
    task_run_name="microstructure-{symbol}",
    retries=3,
    retry_delay_seconds=[2, 5, 15],
    retry_jitter_factor=0.5,
    retry_condition_fn=only_retryable,
    cache_policy=NO_CACHE,
)
def ingest_order_book_and_trades(symbol: str) -> MicrostructureReport:
    settings = get_settings()
    return ingest_microstructure(
        composition.ledger(settings),
        composition.market_source(settings),
        symbol,
        settings.order_book_depth,
    )
