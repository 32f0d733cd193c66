from __future__ import annotations

from prefect import flow

from infra.jobs.ingest import IngestReport
from infra.settings import get_settings
from tasks.ingest import ingest_symbol


@flow(name="ingest", log_prints=True)
def ingest(symbols: list[str] | None = None) -> list[IngestReport]:
    """Ingest candles for every configured symbol from files or a ccxt exchange."""
    return [ingest_symbol(s) for s in (symbols or list(get_settings().symbols))]
