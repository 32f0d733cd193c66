"""Reconciliation of the ledger with the simulated exchange after the failures it exists for."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from core.candles.bar import Bar
from core.clock import FakeClock
from core.orders import Order, OrderStatus
from core.risk.state import Control, HaltCause, TradingState, effective_state
from core.types import ClientOrderId, Side, Symbol
from infra.alerts import Alerts
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from infra.ledger.ledger import Ledger
from services.execution import submit_order
from services.reconcile import mark_pending, reconcile
from tests.services.open_book import ACCOUNT, T0, record_order

BTC = Symbol("BTC/USDT")
CLOCK = FakeClock(T0 + timedelta(days=1))


@pytest.fixture
def broker() -> SimulatedBroker:
    return SimulatedBroker(SimulationConfig(starting_cash=Decimal(10000)))


def bar(hours: int, price: str = "100") -> Bar:
    p = Decimal(price)
    return Bar(T0 + timedelta(hours=hours), p, p, p, p, Decimal(1000))


def run(ledger: Ledger, broker: SimulatedBroker, alerts: Alerts | None = None):  # type: ignore[no-untyped-def]
    return reconcile(ledger, broker, ACCOUNT, ["BTC/USDT"], CLOCK, alerts or Alerts())


def test_reconcile_when_pending_after_start_then_halted_until_it_passes(
    ledger: Ledger, broker: SimulatedBroker
) -> None:
    ledger.accounts.ensure(ACCOUNT, Decimal(10000), T0)
    mark_pending(ledger, CLOCK)
    state, cause, _ = effective_state(ledger.safety.flags(CLOCK.now()))
    assert (state, cause) == (TradingState.HALTED, HaltCause.NOT_RECONCILED)
    assert run(ledger, broker).passed
    assert effective_state(ledger.safety.flags(CLOCK.now()))[0] is TradingState.ACTIVE
    assert [e.step for e in ledger.safety.events(Control.RECONCILIATION)] == ["pending", "passed"]


def test_reconcile_when_process_died_after_sending_then_order_and_fill_adopted(
    ledger: Ledger, broker: SimulatedBroker
) -> None:
    ledger.accounts.ensure(ACCOUNT, Decimal(10000), T0)
    coid = record_order(ledger, "BTC/USDT", 1)
    order = ledger.orders.get(coid)
    assert order is not None
    broker.place(order)  # sent; the process was killed before the ledger heard back
    broker.on_candle(BTC, bar(2))  # and it filled while we were down
    assert ledger.orders.get(coid).status is OrderStatus.NEW  # type: ignore[union-attr]

    report = run(ledger, broker)

    assert report.passed, report.unexplained
    assert report.orders_found_sent == [coid]
    assert report.adopted_fills == [f"{coid}-1"]
    assert ledger.orders.get(coid).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert ledger.fills.positions(ACCOUNT)[BTC].quantity == Decimal(1)
    assert ledger.accounts.cash(ACCOUNT) == broker.balances()["USDT"].total
    again = run(ledger, broker)  # nothing new: nothing adopted twice
    assert (again.passed, again.adopted_fills, again.orders_found_sent) == (True, [], [])


def test_reconcile_when_fill_event_was_lost_then_adopted_once(
    ledger: Ledger, broker: SimulatedBroker
) -> None:
    ledger.accounts.ensure(ACCOUNT, Decimal(10000), T0)
    coid = record_order(ledger, "BTC/USDT", 1)
    submit_order(ledger, broker, coid, CLOCK)
    broker.on_candle(BTC, bar(2))  # the fill happened; we never recorded it
    report = run(ledger, broker)
    assert report.adopted_fills == [f"{coid}-1"]
    assert len(ledger.fills.history(ACCOUNT)) == 1
    assert report.passed


def test_reconcile_when_broker_forgot_a_working_order_then_marked_expired(
    ledger: Ledger, broker: SimulatedBroker
) -> None:
    ledger.accounts.ensure(ACCOUNT, Decimal(10000), T0)
    coid = record_order(ledger, "BTC/USDT", 1, limit="1")
    submit_order(ledger, broker, coid, CLOCK)
    fresh = SimulatedBroker(SimulationConfig(starting_cash=Decimal(10000)))  # book lost
    report = reconcile(ledger, fresh, ACCOUNT, ["BTC/USDT"], CLOCK, Alerts())
    assert report.orders_unknown_to_broker == [coid]
    assert ledger.orders.get(coid).status is OrderStatus.EXPIRED  # type: ignore[union-attr]
    assert report.passed


def test_reconcile_when_broker_has_a_trade_we_never_made_then_fails_halts_and_alerts(
    ledger: Ledger, broker: SimulatedBroker
) -> None:
    ledger.accounts.ensure(ACCOUNT, Decimal(10000), T0)
    stranger = Order(ClientOrderId("manual-1"), None, BTC, Side.BUY, Decimal(2), T0, T0)
    broker.place(stranger)  # someone traded on the account by hand
    broker.on_candle(BTC, bar(1))
    alerts = Alerts()

    report = run(ledger, broker, alerts)

    assert not report.passed
    assert any("manual-1-1" in u and "never recorded" in u for u in report.unexplained)
    assert any(u.startswith("position BTC/USDT: ledger 0, broker 2") for u in report.unexplained)
    assert any(u.startswith("cash USDT") for u in report.unexplained)
    state, cause, _ = effective_state(ledger.safety.flags(CLOCK.now()))
    assert (state, cause) == (TradingState.HALTED, HaltCause.NOT_RECONCILED)
    assert "FAILED" in alerts.sent[0][0]


def test_reconcile_when_the_quote_currency_is_not_usdt_then_cash_compared_in_it(
    ledger: Ledger,
) -> None:
    btc_quoted = SimulatedBroker(SimulationConfig(starting_cash=Decimal(2), quote="BTC"))
    ledger.accounts.ensure(ACCOUNT, Decimal(3), T0)  # the ledger thinks it had 3 BTC
    report = reconcile(ledger, btc_quoted, ACCOUNT, ["ETH/BTC"], CLOCK, Alerts(), quote="BTC")
    assert report.unexplained == ["cash BTC: ledger 3, broker 2"]


def test_reconcile_when_an_order_was_partly_filled_then_cancelled_unseen_then_both_adopted(
    ledger: Ledger,
) -> None:
    """The fill is adopted before the order follows the exchange to CANCELLED (the other way
    round the fill would meet a closed order and reconciliation could never pass)."""
    thin = SimulatedBroker(
        SimulationConfig(starting_cash=Decimal(10000), liquidity=Decimal("0.0005"))
    )
    ledger.accounts.ensure(ACCOUNT, Decimal(10000), T0)
    coid = record_order(ledger, "BTC/USDT", 1)
    submit_order(ledger, thin, coid, CLOCK)
    thin.on_candle(BTC, bar(2))  # 0.5 of 1 fills (0.0005 x volume 1000), unseen by the ledger
    thin.cancel(coid, BTC)  # then the rest is cancelled, unseen too
    report = run(ledger, thin)
    assert report.passed, report.unexplained
    assert report.adopted_fills == [f"{coid}-1"]
    order = ledger.orders.get(coid)
    assert order is not None
    assert (order.status, order.filled_quantity) == (OrderStatus.CANCELLED, Decimal("0.5"))
