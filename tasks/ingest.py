from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from infra import composition
from infra.jobs.ingest import IngestReport, ingest_exchange, ingest_file
from infra.settings import get_settings
from tasks.retry import only_retryable


@task(
    name="ingest-symbol",
    retries=3,
    retry_delay_seconds=[2, 5, 15],
    retry_jitter_factor=0.5,
    retry_condition_fn=only_retryable,
    cache_policy=NO_CACHE,
)
def ingest_symbol(symbol: str) -> IngestReport:
    settings = get_settings()
    ledger = composition.ledger(settings)
    if settings.source == "ccxt":
        return ingest_exchange(
            ledger,
            composition.candle_source(settings),
            symbol,
            settings.timeframe,
            composition.ccxt_since(settings),
            settings.gap_policy,
        )
    return ingest_file(
        ledger,
        settings.exchange,
        settings.data_dir,
        symbol,
        settings.timeframe,
        settings.gap_policy,
    )
