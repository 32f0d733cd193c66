from __future__ import annotations

from prefect import flow

from flows.run_logs import set_up_logs
from services.reconcile import ReconciliationFailed, ReconciliationReport
from tasks.reconcile import reconcile_with_broker
from tasks.reporting import publish_reconciliation


@flow(name="reconcile")
def reconcile() -> ReconciliationReport:
    """Ledger against broker: adopt what can be explained, halt and alert on the rest (and
    fail the run, so the UI shows it)."""
    set_up_logs()
    report = reconcile_with_broker()
    publish_reconciliation(report)
    if not report.passed:
        raise ReconciliationFailed("; ".join(report.unexplained))
    return report
