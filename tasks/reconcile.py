from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from core.clock import SystemClock
from infra import composition
from infra.jobs.reconcile import ReconciliationReport, mark_pending, reconcile
from infra.settings import get_settings
from tasks.retry import only_retryable


@task(
    name="reconcile",
    retries=3,
    retry_delay_seconds=[2, 5, 15],
    retry_condition_fn=only_retryable,
    cache_policy=NO_CACHE,
)
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
