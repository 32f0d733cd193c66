from __future__ import annotations

from prefect import flow

from infra.jobs.ingest import IngestReport
from infra.settings import get_settings
from tasks.ingest import ingest_symbol


class IngestFailed(RuntimeError):
    """Some symbols failed; the others were stored."""


@flow(name="ingest", log_prints=True)
def ingest(symbols: list[str] | None = None) -> list[IngestReport]:
    """Ingest every configured symbol as its own mapped task: one bad symbol fails alone."""
    wanted = symbols or list(get_settings().symbols)
    futures = ingest_symbol.map(wanted)
    reports: list[IngestReport] = []
    failures: list[str] = []
    for symbol, future in zip(wanted, futures, strict=True):
        future.wait()
        if future.state.is_completed():
            reports.append(future.result())
        else:
            failures.append(f"{symbol}: {future.state.message}")
    if failures:
        stored = ", ".join(r.symbol for r in reports) or "none"
        raise IngestFailed(
            f"{len(failures)} of {len(wanted)} symbols failed (stored: {stored}); "
            + "; ".join(failures)
        )
    return reports
