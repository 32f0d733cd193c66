"""Hundreds of decision/order cycles under injected faults, on SQLite and PostgreSQL: no order
is ever sent twice, no fill is lost, and after reconciliation the ledger and the exchange agree
on every position and on cash. (bench/faults.py runs 1,000+ cycles and reports the counts.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.harness import FaultPlan, run_cycles

pytestmark = pytest.mark.slow

KINDS = {
    "timeout_before",
    "timeout_after",
    "rate_limited",
    "db_outage",
    "fills_missed_in_outage",
    "duplicate_fill",
    "kill_after_accept",
    "kill_before_send",
}


def test_cycles_when_faults_injected_then_never_twice_nothing_lost_books_agree(
    ledger_url: str, shared_data: Path, tmp_path: Path
) -> None:
    report = run_cycles(ledger_url, shared_data, 300, FaultPlan(seed=11, kills=2), tmp_path)

    assert report.cycles == 300
    assert set(report.faults) == KINDS, report.faults  # every kind was injected
    assert report.orders > 150
    assert report.duplicated_orders == 0
    assert report.lost_fills == 0
    assert report.position_mismatches == 0
    assert report.cash_mismatches == 0
    assert report.placed_while_ledger_down == 0
    assert report.reconciliations_failed == 0


def test_harness_when_lookup_before_send_removed_then_duplicates_are_caught(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The harness can fail: a submit that re-sends after a lost answer, without asking the
    exchange first, opens second orders, and the report counts them."""
    from core.orders import OrderEvent, OrderStatus
    from services.execution import follow_broker

    def send_without_lookup(ledger, broker, coid, clock):  # type: ignore[no-untyped-def]
        order = ledger.orders.get(coid)
        if order.status is not OrderStatus.NEW:
            return order
        placed = broker.place(order)
        sent = ledger.orders.transition(coid, OrderEvent.SUBMIT, clock.now())
        return follow_broker(ledger, sent, placed, clock)

    monkeypatch.setattr("tests.faults.harness.submit_order", send_without_lookup)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    report = run_cycles(url, shared_data, 120, FaultPlan(seed=3, kills=0), tmp_path)
    assert report.duplicated_orders > 0
