from __future__ import annotations

from prefect import task

from core.clock import SystemClock
from services import bootstrap
from services.reconcile import ReconciliationReport, mark_pending, reconcile
from tasks.retry import IO_RETRIES


@task(name="reconcile", **IO_RETRIES)
def reconcile_with_broker(after_start: bool = False, replay: bool = False) -> ReconciliationReport:
    """Compare the ledger with the broker; with `after_start`, trading is HALTED from before
    the comparison until it passes (a new process must not trade on an unverified ledger).
    A replay reconciles with the simulated exchange it is about to trade on."""
    settings = bootstrap.get_settings()
    ledger = bootstrap.ledger(settings)
    clock = SystemClock()
    if after_start:
        mark_pending(ledger, clock, "process started: waiting for reconciliation")
    broker = bootstrap.replay_exchange(settings) if replay else bootstrap.broker(settings)
    return reconcile(
        ledger,
        broker,
        settings.account,
        settings.symbols,
        clock,
        bootstrap.alerts(settings),
        quote=settings.quote_currency,
        dust=bootstrap.reconciliation_dust(settings),
        since=bootstrap.reconciliation_since(settings, ledger),
    )
