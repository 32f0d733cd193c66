"""The kill switch, complete: halt, cancel every open order, close every position, record each
step, alert; idempotent on repeated activation; freeze mode closes nothing."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from core.alerts import Severity
from core.candles.bar import Bar
from core.clock import FakeClock
from core.orders import Order, OrderOrigin, OrderStatus
from core.risk.state import Control
from core.types import ClientOrderId, Side, Symbol
from infra.alerts import Alerts
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from infra.ledger.ledger import Ledger
from services.execution import submit_order
from services.kill_switch import engage
from tests.services.open_book import ACCOUNT, T0, open_book, record_order

NOW = T0 + timedelta(days=2)


@pytest.fixture
def broker() -> SimulatedBroker:
    return SimulatedBroker(SimulationConfig(starting_cash=Decimal(100_000)))


def activate(ledger: Ledger, signature: str = "sig-1") -> None:
    ledger.requests.set_kill_switch(True, "drill", signature, NOW, "test", int(NOW.timestamp()))


def test_engage_when_open_orders_and_positions_then_all_cancelled_and_closed_in_order(
    ledger: Ledger, broker: SimulatedBroker
) -> None:
    resting, held = open_book(ledger, broker, open_orders=5, positions=3)
    unsent = record_order(ledger, "U/USDT", 500)  # decided, never sent
    activate(ledger)
    alerts = Alerts()

    report = engage(ledger, broker, ACCOUNT, FakeClock(NOW), alerts)

    assert sorted(report.cancelled) == sorted([*resting, unsent])
    assert ledger.orders.open(ACCOUNT) == [
        o for o in ledger.orders.open(ACCOUNT) if o.origin is OrderOrigin.KILL_SWITCH
    ]
    for coid in resting:
        assert ledger.orders.get(coid).status is OrderStatus.CANCELLED  # type: ignore[union-attr]
        assert (
            broker.get_order(coid, ledger.orders.get(coid).symbol).status is OrderStatus.CANCELLED
        )  # type: ignore[union-attr]
    assert ledger.orders.get(unsent).status is OrderStatus.CANCELLED  # type: ignore[union-attr]
    closing = [ledger.orders.get(c) for c in report.closing_orders]
    assert sorted(o.symbol for o in closing) == sorted(held)  # type: ignore[union-attr]
    assert all(o.side is Side.SELL and o.quantity == 1 for o in closing)  # type: ignore[union-attr]
    assert all(o.status is OrderStatus.ACCEPTED for o in closing)  # type: ignore[union-attr]
    steps = [e.step for e in ledger.safety.events(Control.KILL_SWITCH)]
    assert steps == ["halted", "orders_cancelled", "positions_closing", "alerted"]
    [(title, text)] = alerts.sent
    assert "kill switch ACTIVE" in title
    assert "cancelled 6 orders; closing 3 positions" in text
    assert report.seconds_total < 1.0


def test_engage_when_activated_again_then_nothing_new_is_placed(
    ledger: Ledger, broker: SimulatedBroker
) -> None:
    open_book(ledger, broker, open_orders=2, positions=2)
    activate(ledger, "sig-1")
    first = engage(ledger, broker, ACCOUNT, FakeClock(NOW), Alerts())
    activate(ledger, "sig-2")  # a second signed activation while active
    again = engage(ledger, broker, ACCOUNT, FakeClock(NOW + timedelta(seconds=5)), Alerts())

    assert again.cancelled == []  # its own closing orders are left to fill
    assert sorted(again.closing_orders) == sorted(first.closing_orders)  # same ids
    kill_orders = [o for o in ledger.orders.find(ACCOUNT) if o.origin is OrderOrigin.KILL_SWITCH]
    assert len(kill_orders) == 2
    assert len([o for o in broker.open_orders() if o.side is Side.SELL]) == 2
    assert all(o.status is OrderStatus.ACCEPTED for o in kill_orders)


def test_engage_when_freeze_configured_then_positions_stay_and_orders_are_cancelled(
    ledger: Ledger, broker: SimulatedBroker
) -> None:
    resting, held = open_book(ledger, broker, open_orders=2, positions=2)
    activate(ledger)
    report = engage(ledger, broker, ACCOUNT, FakeClock(NOW), Alerts(), close_positions=False)
    assert sorted(report.cancelled) == sorted(resting)
    assert report.closing_orders == []
    assert {s: p.quantity for s, p in ledger.fills.positions(ACCOUNT).items()} == dict.fromkeys(
        held, Decimal(1)
    )
    assert "positions_frozen" in [e.step for e in ledger.safety.events(Control.KILL_SWITCH)]


def test_submit_when_kill_switch_active_then_decided_order_cancelled_not_sent(
    ledger: Ledger, broker: SimulatedBroker
) -> None:
    ledger.accounts.ensure(ACCOUNT, Decimal(100_000), T0)
    coid = record_order(ledger, "BTC/USDT", 1)
    activate(ledger)
    out = submit_order(ledger, broker, coid, FakeClock(NOW))
    assert out.status is OrderStatus.CANCELLED
    assert broker.get_order(coid, out.symbol) is None


def test_kill_switch_when_activated_and_released_then_trading_state_changes_recorded_with_cause(
    ledger: Ledger,
) -> None:
    from core.risk.state import Control

    ledger.accounts.ensure(ACCOUNT, Decimal(1000), T0)
    activate(ledger)
    ledger.requests.set_kill_switch(False, "drill over", "sig-2", NOW, "test", int(NOW.timestamp()))
    changes = [
        (e.step, e.detail["previous"], e.detail["cause"])
        for e in ledger.safety.events(Control.TRADING_STATE)
    ]
    assert changes == [("halted", "active", "kill_switch"), ("active", "halted", "cleared")]


def test_engage_when_a_sell_cannot_be_cancelled_then_closing_order_sells_only_the_rest(
    ledger: Ledger, broker: SimulatedBroker
) -> None:
    from core.errors import RetryableExchangeError

    _, [held] = open_book(ledger, broker, open_orders=0, positions=1)
    stuck = record_order(ledger, held, 300, side=Side.SELL, qty="0.4", limit="1000")
    submit_order(ledger, broker, stuck, FakeClock(NOW))
    real_cancel = broker.cancel

    def cancel(coid, symbol):  # type: ignore[no-untyped-def]
        if coid == stuck:
            raise RetryableExchangeError("exchange timed out on the cancel")
        return real_cancel(coid, symbol)

    broker.cancel = cancel  # type: ignore[method-assign]
    activate(ledger)
    report = engage(ledger, broker, ACCOUNT, FakeClock(NOW), Alerts())

    assert report.cancel_failed == [f"{stuck}: exchange timed out on the cancel"]
    [closing] = [ledger.orders.get(c) for c in report.closing_orders]
    assert closing is not None
    assert closing.quantity == Decimal("0.6")  # 1 held, 0.4 still offered by the stuck sell


class _KilledWhileSending(SimulatedBroker):
    """An exchange slow enough that the kill switch lands while an order is on its way."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(SimulationConfig())
        self.ledger, self.report = ledger, None

    def place(self, order):  # type: ignore[no-untyped-def]
        if self.report is None and order.origin is not OrderOrigin.KILL_SWITCH:
            when = T0 + timedelta(hours=1)
            self.ledger.requests.set_kill_switch(True, "race", "s" * 64, when, None, 1)
            self.report = engage(self.ledger, self, ACCOUNT, FakeClock(when), Alerts())
        return super().place(order)


def test_kill_switch_when_it_lands_while_an_order_is_in_flight_then_cancelled_at_the_exchange(
    ledger: Ledger,
) -> None:
    ledger.accounts.ensure(ACCOUNT, Decimal(10000), T0)
    coid = record_order(ledger, "BTC/USDT", 0)
    exchange = _KilledWhileSending(ledger)
    order = submit_order(ledger, exchange, coid, FakeClock(T0 + timedelta(hours=1)))
    assert exchange.report is not None
    assert exchange.report.in_flight == [coid]  # claimed, not yet at the exchange
    assert order.status is OrderStatus.CANCELLED  # cancelled there the moment it arrived
    assert exchange.get_order(coid, Symbol("BTC/USDT")).status is OrderStatus.CANCELLED  # type: ignore[union-attr]
    assert exchange.open_orders() == []


def test_kill_switch_when_it_lands_while_a_manual_order_is_in_flight_then_cancelled_too(
    ledger: Ledger,
) -> None:
    """An operator's order (POST /api/v1/orders) is held to the same halt as a decision's."""
    ledger.accounts.ensure(ACCOUNT, Decimal(10000), T0)
    manual = Order(
        ClientOrderId("tf-m-" + "0" * 28), None, Symbol("BTC/USDT"), Side.BUY, Decimal(1), T0,
        T0, origin=OrderOrigin.MANUAL,
    )  # fmt: skip
    ledger.orders.insert_many([manual], ACCOUNT, "paper")
    exchange = _KilledWhileSending(ledger)
    order = submit_order(
        ledger, exchange, manual.client_order_id, FakeClock(T0 + timedelta(hours=1))
    )
    assert exchange.report is not None
    assert order.status is OrderStatus.CANCELLED
    assert exchange.open_orders() == []


class _KilledOnArrival(SimulatedBroker):
    """An exchange that takes an order (and fills it at once when `fills`), while the kill
    switch lands between the sender's claim and the sender hearing back."""

    def __init__(self, ledger: Ledger, fills: bool) -> None:
        super().__init__(SimulationConfig(starting_cash=Decimal(100_000)))
        self.ledger, self.fills_at_once, self.report = ledger, fills, None

    def place(self, order):  # type: ignore[no-untyped-def]
        placed = super().place(order)
        if self.report is None and order.origin is not OrderOrigin.KILL_SWITCH:
            if self.fills_at_once:
                p = Decimal(100)
                self.on_candle(
                    order.symbol, Bar(order.market_time + timedelta(hours=1), p, p, p, p, p)
                )
            when = T0 + timedelta(hours=1)
            self.ledger.requests.set_kill_switch(True, "race", "s" * 64, when, None, 1)
            self.report = engage(self.ledger, self, ACCOUNT, FakeClock(when), Alerts())
        return placed


@pytest.mark.parametrize(
    ("fills", "status", "cancelled"),
    [(False, OrderStatus.CANCELLED, True), (True, OrderStatus.SUBMITTED, False)],
)
def test_kill_switch_when_it_finds_a_claimed_order_at_the_exchange_then_it_takes_it_over(
    ledger: Ledger, fills: bool, status: OrderStatus, cancelled: bool
) -> None:
    ledger.accounts.ensure(ACCOUNT, Decimal(100_000), T0)
    coid = record_order(ledger, "BTC/USDT", 0)
    exchange = _KilledOnArrival(ledger, fills)
    order = submit_order(ledger, exchange, coid, FakeClock(T0 + timedelta(hours=1)))
    assert exchange.report is not None
    # Working there: cancelled there; filled there: nothing to cancel. Never "in flight".
    report = exchange.report
    assert (report.cancelled, report.in_flight, report.failures) == (
        [coid] if cancelled else [], [], []
    )  # fmt: skip
    # The sender hears back after the kill switch recorded the order as sent: it leaves it
    # as the kill switch left it (a filled one waits for its fill to be recorded).
    assert order.status is status
    assert ledger.orders.get(coid).status is status  # type: ignore[union-attr]


def test_kill_switch_when_the_sender_records_the_send_first_then_it_cancels_at_the_exchange(
    ledger: Ledger, broker: SimulatedBroker
) -> None:
    ledger.accounts.ensure(ACCOUNT, Decimal(100_000), T0)
    coid = record_order(ledger, "BTC/USDT", 0)
    clock = FakeClock(T0 + timedelta(hours=1))
    assert ledger.orders.claim_for_sending(coid, clock.now())
    broker.place(ledger.orders.get(coid))  # type: ignore[arg-type]
    looked_up = broker.get_order

    def sender_answered_meanwhile(client_order_id, symbol):  # type: ignore[no-untyped-def]
        ledger.orders.mark_submitted(client_order_id, clock.now())  # the sender's record
        return looked_up(client_order_id, symbol)

    broker.get_order = sender_answered_meanwhile  # type: ignore[method-assign]
    activate(ledger)
    report = engage(ledger, broker, ACCOUNT, clock, Alerts())
    assert (report.cancelled, report.failures) == ([coid], [])
    assert ledger.orders.get(coid).status is OrderStatus.CANCELLED  # type: ignore[union-attr]


class _Levels(Alerts):
    """The real Alerts, remembering each alert's severity (what routes it)."""

    def __init__(self) -> None:
        super().__init__()
        self.levels: list[Severity] = []

    def send(self, title: str, body: str, *, severity: Severity | str = Severity.WARNING,
             key: str | None = None) -> bool:  # fmt: skip
        self.levels.append(Severity(severity))
        return super().send(title, body, severity=severity, key=key)


def test_engage_when_activated_then_its_alert_is_critical(
    ledger: Ledger, broker: SimulatedBroker
) -> None:
    """Critical: routed to the critical notifiers (TRADEFLOW_ALERT_ROUTES), never debounced."""
    open_book(ledger, broker, open_orders=1, positions=1)
    activate(ledger)
    alerts = _Levels()

    engage(ledger, broker, ACCOUNT, FakeClock(NOW), alerts)

    assert alerts.levels == [Severity.CRITICAL]
