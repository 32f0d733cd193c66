"""Never twice, through the real Prefect engine: the task's retries must not double an order;
one order that cannot be sent stops none of the others."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.orders import Order, OrderStatus
from core.ports import BrokerOrder
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from tasks.orders import send_all, submit_order
from tests.infra.ledger.test_ledger import make_decision
from tests.services.flaky_broker import AcceptThenTimeout
from tests.services.open_book import record_order

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


class _BrokenForOne(SimulatedBroker):
    """An exchange whose answer for one order cannot be read (a bug, not retried)."""

    def __init__(self, broken: str) -> None:
        super().__init__(SimulationConfig())
        self.broken = broken

    def place(self, order: Order) -> BrokerOrder:
        if order.client_order_id == self.broken:
            raise RuntimeError("unreadable answer")
        return super().place(order)


def test_send_all_when_one_send_fails_then_the_others_are_sent_and_the_failure_named(
    app_settings,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect import flow

    from services import bootstrap

    ledger = bootstrap.ledger(app_settings())
    fresh = datetime.now(tz=UTC).replace(minute=0, second=0, microsecond=0)  # young enough to send
    coids = [record_order(ledger, s, 0, at=fresh) for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT")]
    monkeypatch.setattr(bootstrap, "broker", lambda settings: _BrokenForOne(coids[1]))

    @flow
    def send() -> list[str]:
        return send_all(coids)

    failures = send()
    [failure] = failures
    assert failure.startswith(f"{coids[1]}: ")
    assert "unreadable answer" in failure
    status = {coid: ledger.orders.get(coid).status for coid in coids}  # type: ignore[union-attr]
    assert status == {
        coids[0]: OrderStatus.ACCEPTED,
        coids[1]: OrderStatus.NEW,  # claimed, outcome unknown: the next run looks it up first
        coids[2]: OrderStatus.ACCEPTED,
    }
