from __future__ import annotations

from prefect import flow

from infra.jobs.reconcile import ReconciliationReport
from tasks.reconcile import reconcile_with_broker


@flow(name="reconcile", log_prints=True)
def reconcile() -> ReconciliationReport:
    """Ledger against broker: adopt what can be explained, halt and alert on the rest."""
    report = reconcile_with_broker()
    print(
        f"reconciliation {'passed' if report.passed else 'FAILED'}: "
        f"{len(report.adopted_fills)} fills adopted, {len(report.orders_updated)} orders updated, "
        f"{len(report.orders_unknown_to_broker)} unknown to the broker"
        + (f"; unexplained: {report.unexplained}" if report.unexplained else "")
    )
    return report
