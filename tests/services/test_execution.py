from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.clock import FakeClock
from core.errors import FatalExchangeError, RetryableExchangeError
from core.orders import OrderStatus
from infra.ledger.ledger import Ledger
from services.execution import OrderNotRecorded, submit_order
from tests.infra.ledger.test_ledger import make_decision
from tests.services.flaky_broker import AcceptThenTimeout

CLOCK = FakeClock(datetime(2024, 9, 1, 13, tzinfo=UTC))


@pytest.fixture
def recorded(ledger: Ledger):  # type: ignore[no-untyped-def]
    ledger.accounts.ensure("paper", Decimal("10000"), CLOCK.now())
    d = make_decision()
    ledger.orders.record_decision(d, "paper")
    return d.order.client_order_id  # type: ignore[union-attr]


def test_submit_when_broker_times_out_after_accepting_then_retry_sends_nothing_twice(
    ledger: Ledger, recorded: str
) -> None:
    broker = AcceptThenTimeout(failures=1)
    with pytest.raises(RetryableExchangeError):
        submit_order(ledger, broker, recorded, CLOCK)
    assert ledger.orders.get(recorded).status is OrderStatus.NEW  # type: ignore[union-attr,arg-type]
    placed = submit_order(ledger, broker, recorded, CLOCK)  # the retry
    assert placed.status is OrderStatus.ACCEPTED
    assert broker.place_calls == 1  # found by client id, not re-sent
    assert len(broker.open_orders()) == 1
    assert ledger.orders.get(recorded).status is OrderStatus.ACCEPTED  # type: ignore[union-attr,arg-type]
    assert submit_order(ledger, broker, recorded, CLOCK).status is OrderStatus.ACCEPTED
    assert broker.place_calls == 1


def test_submit_when_order_not_in_ledger_then_refuses(ledger: Ledger) -> None:
    with pytest.raises(OrderNotRecorded):
        submit_order(ledger, AcceptThenTimeout(0), "tf-unknown", CLOCK)  # type: ignore[arg-type]


def test_submit_when_broker_refuses_then_order_rejected_with_reason(
    ledger: Ledger, recorded: str
) -> None:
    class Refusing(AcceptThenTimeout):
        def place(self, order):  # type: ignore[no-untyped-def]
            raise FatalExchangeError("insufficient balance")

    out = submit_order(ledger, Refusing(0), recorded, CLOCK)  # type: ignore[arg-type]
    assert out.status is OrderStatus.REJECTED
