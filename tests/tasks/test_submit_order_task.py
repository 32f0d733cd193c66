"""Never twice, through the real Prefect engine: the task's retries must not double an order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.orders import OrderStatus
from tasks.orders import submit_order
from tests.infra.ledger.test_ledger import make_decision
from tests.services.flaky_broker import AcceptThenTimeout

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_submit_task_when_broker_fails_after_accepting_then_retried_task_leaves_one_order(
    app_settings,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect import flow

    from services import bootstrap

    ledger = bootstrap.ledger(app_settings())
    # Decided on the candle that just closed: fresh enough to send (an old one is cancelled).
    hour = datetime.now(tz=UTC).replace(minute=0, second=0, microsecond=0)
    decision = make_decision(t=hour - timedelta(hours=1))
    ledger.orders.record_decision(decision, "paper")
    coid = decision.order.client_order_id  # type: ignore[union-attr]
    broker = AcceptThenTimeout(failures=2)
    monkeypatch.setattr(bootstrap, "broker", lambda settings: broker)
    fast = submit_order.with_options(retry_delay_seconds=0)

    @flow
    def submit_twice() -> list[str]:
        first = fast(coid)
        again = fast(coid)  # a restarted flow submitting the same decision
        return [first.status.value, again.status.value]

    assert submit_twice() == ["accepted", "accepted"]
    assert broker.place_calls == 1
    assert [o.client_order_id for o in broker.open_orders()] == [coid]
    orders = ledger.orders.find("paper")
    assert [(o.client_order_id, o.status) for o in orders] == [(coid, OrderStatus.ACCEPTED)]
    assert ledger.orders.submit_attempts(coid) == 2  # the first try and its one retry
