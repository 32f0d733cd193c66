"""Never twice, through the real Prefect engine: the task's retries must not double an order."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.orders import OrderStatus
from infra.ledger.repository import Ledger
from tasks.orders import submit_order
from tests.infra.jobs.flaky_broker import AcceptThenTimeout
from tests.infra.ledger.test_repository import make_decision

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_submit_task_when_broker_fails_after_accepting_then_retried_task_leaves_one_order(
    ledger: Ledger,
) -> None:
    from prefect import flow

    ledger.ensure_account("paper", Decimal("10000"), datetime(2024, 9, 1, tzinfo=UTC))
    decision = make_decision()
    ledger.record_decision(decision, "paper")
    coid = decision.order.client_order_id  # type: ignore[union-attr]
    broker = AcceptThenTimeout(failures=2)
    fast = submit_order.with_options(retry_delay_seconds=0)

    @flow
    def submit_twice() -> list[str]:
        first = fast(ledger, broker, coid)
        again = fast(ledger, broker, coid)  # a restarted flow submitting the same decision
        return [first.status.value, again.status.value]

    assert submit_twice() == ["accepted", "accepted"]
    assert broker.place_calls == 1
    assert [o.client_order_id for o in broker.open_orders()] == [coid]
    orders = ledger.orders("paper")
    assert [(o.client_order_id, o.status) for o in orders] == [(coid, OrderStatus.ACCEPTED)]
    from infra.ledger.models import OrderRow

    with ledger._factory() as s:
        assert s.get(OrderRow, coid).submit_attempts == 2  # type: ignore[union-attr]  # 1 retry
