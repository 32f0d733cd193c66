from __future__ import annotations

from prefect import task

from core.clock import SystemClock
from infra import composition
from infra.jobs.reconcile import ReconciliationReport, mark_pending, reconcile
from infra.settings import get_settings
from tasks.retry import IO_RETRIES


@task(name="reconcile", **IO_RETRIES)
def reconcile_with_broker(after_start: bool = False) -> ReconciliationReport:
    """Compare the ledger with the broker; with `after_start`, trading is HALTED from before
    the comparison until it passes (a new process must not trade on an unverified ledger)."""
    settings = get_settings()
    ledger = composition.ledger(settings)
    clock = SystemClock()
    if after_start:
        mark_pending(ledger, clock, "process started: waiting for reconciliation")
    return reconcile(
        ledger,
        composition.broker(settings),
        settings.account,
        settings.symbols,
        clock,
        composition.alerts(settings),
    )
