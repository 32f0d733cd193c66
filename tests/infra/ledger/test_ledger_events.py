"""The stores write their events with their changes (SQLite and PostgreSQL): a decision, its
order and its fill come out of the outbox in order under one correlation id; a write that
rolls back or that an idempotent replay skips leaves no event."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy.exc import IntegrityError

from core.decision import Decision
from core.events import Event, EventKind
from core.orders import (
    Fill,
    InvalidTransition,
    Order,
    OrderChange,
    OrderEvent,
    OrderOrigin,
    OrderStatus,
    kill_switch_order_id,
)
from core.risk.state import Control
from core.types import ClientOrderId, Side, Symbol
from infra.ledger.ledger import Ledger
from infra.ledger.orders import UnknownOrder
from tests.infra.ledger.test_ledger import T0, make_decision

BTC = Symbol("BTC/USDT")
K = EventKind


@pytest.fixture
def decided(ledger: Ledger) -> Decision:
    """An approved decision recorded with its order (NEW) on a funded account."""
    ledger.accounts.ensure("paper", Decimal("10000"), T0)
    decision = make_decision()
    assert ledger.orders.record_decision(decision, "paper") is True
    return decision


def coid_of(decision: Decision) -> ClientOrderId:
    assert decision.order is not None
    return decision.order.client_order_id


def fill_of(decision: Decision, quantity: str = "0.01753", n: int = 1) -> Fill:
    return Fill(
        coid_of(decision),
        BTC,
        Side.BUY,
        Decimal(quantity),
        Decimal("57040.85617"),
        Decimal("0.99992620866"),
        T0 + timedelta(hours=1, minutes=n),
        f"{coid_of(decision)}-{n}",
    )


def kinds(events: list[Event]) -> list[EventKind]:
    return [e.kind for e in events]


def closing_order(symbol: str = "BTC/USDT") -> Order:
    return Order(
        kill_switch_order_id(T0, symbol),
        None,
        Symbol(symbol),
        Side.SELL,
        Decimal("0.5"),
        T0,
        T0,
        origin=OrderOrigin.KILL_SWITCH,
    )


def test_outbox_when_decision_order_and_fill_then_events_in_order_under_one_correlation(
    ledger: Ledger, decided: Decision
) -> None:
    coid = coid_of(decided)
    ledger.orders.transition(coid, OrderEvent.SUBMIT, T0 + timedelta(hours=1))
    ledger.orders.transition(coid, OrderEvent.ACCEPT, T0 + timedelta(hours=1))
    assert ledger.fills.record("paper", fill_of(decided)) is True

    events = ledger.events.after(0)

    assert kinds(events) == [
        K.DECISION_MADE,
        K.ORDER_CREATED,
        K.ORDER_UPDATED,
        K.ORDER_UPDATED,
        K.FILL_RECORDED,
        K.ORDER_UPDATED,
        K.POSITION_CHANGED,
    ]
    assert {e.correlation_id for e in events} == {decided.decision_id}
    assert ledger.events.for_correlation(decided.decision_id) == events
    made, created, submitted, _, fill, filled, position = (e.payload for e in events)
    assert made == made | {"client_order_id": coid, "risk_approved": True, "score": 0.4}
    assert made == made | {"action": "BUY", "symbol": "BTC/USDT", "timeframe": "1h"}
    assert made["decision_id"] == created["decision_id"] == decided.decision_id
    assert created == created | {"quantity": "0.01753", "status": "new", "side": "buy"}
    assert (submitted["previous_status"], submitted["status"]) == ("new", "submitted")
    assert (fill["price"], fill["fee"]) == ("57040.85617", "0.99992620866")
    assert (filled["status"], filled["filled_quantity"]) == ("filled", "0.01753")
    assert filled["average_price"] == "57040.85617"
    assert position == position | {"symbol": "BTC/USDT", "quantity": "0.01753"}
    assert json.loads(json.dumps([e.as_json() for e in events]))[0]["channel"] == "decisions"


def test_record_decision_when_denied_then_only_decision_made(ledger: Ledger) -> None:
    ledger.orders.record_decision(make_decision(approved=False), "paper")

    [made] = ledger.events.after(0)

    assert made.kind is K.DECISION_MADE
    assert made.payload["risk_approved"] is False
    assert made.payload["risk_reasons"] == ["TRADING_HALTED: kill_switch: x"]
    assert made.payload["client_order_id"] is None


def test_idempotent_writes_when_repeated_then_no_second_event(
    ledger: Ledger, decided: Decision
) -> None:
    coid = coid_of(decided)
    assert ledger.orders.claim_for_sending(coid, T0)  # a count, not a status change: no event
    assert ledger.orders.mark_submitted(coid, T0) is not None
    before = ledger.events.last_id()

    assert ledger.orders.record_decision(decided, "paper") is False
    assert ledger.orders.mark_submitted(coid, T0) is None  # someone got there first
    assert ledger.orders.cancel_unsent(coid, T0, "too late") is False
    assert ledger.fills.record("paper", fill_of(decided)) is True
    after_fill = ledger.events.last_id()
    assert ledger.fills.record("paper", fill_of(decided)) is False

    assert kinds(ledger.events.after(before)) == [
        K.FILL_RECORDED,
        K.ORDER_UPDATED,
        K.POSITION_CHANGED,
    ]
    assert ledger.events.last_id() == after_fill


def test_apply_when_a_later_change_fails_then_no_event_of_the_rolled_back_write(
    ledger: Ledger, decided: Decision
) -> None:
    coid = coid_of(decided)
    before = ledger.events.last_id()
    changes = [
        OrderChange(coid, (OrderEvent.SUBMIT,), sent=True),
        OrderChange(ClientOrderId("tf-no-such-order"), (OrderEvent.CANCEL,)),
    ]

    with pytest.raises(UnknownOrder):
        ledger.orders.apply(changes, T0)

    assert ledger.events.last_id() == before
    assert ledger.orders.get(coid).status is OrderStatus.NEW  # type: ignore[union-attr]


def test_record_decision_when_its_order_id_is_taken_then_nothing_and_no_event(
    ledger: Ledger, decided: Decision
) -> None:
    before = ledger.events.last_id()
    clash = replace(make_decision(t=T0 + timedelta(hours=1)), order=decided.order)

    with pytest.raises(IntegrityError):
        ledger.orders.record_decision(clash, "paper")

    assert ledger.events.last_id() == before
    assert ledger.orders.decision(clash.decision_id) is None


def test_kill_switch_orders_when_inserted_and_changed_then_events_without_correlation(
    ledger: Ledger,
) -> None:
    orders = [closing_order("BTC/USDT"), closing_order("ETH/USDT")]
    ledger.orders.insert_many(orders, "paper", "paper")
    ledger.orders.insert_many(orders, "paper", "paper")  # a retry: stored already
    ids = [o.client_order_id for o in orders]
    ledger.orders.apply([OrderChange(ids[0], (OrderEvent.SUBMIT,), sent=True)], T0)
    ledger.orders.apply([OrderChange(ids[0], (), sent=True)], T0)  # no change: no news
    assert ledger.orders.cancel_unsent(ids[1], T0, "cancelled by the kill switch, unsent")

    events = ledger.events.after(0)

    assert kinds(events) == [K.ORDER_CREATED, K.ORDER_CREATED, K.ORDER_UPDATED, K.ORDER_UPDATED]
    assert {e.correlation_id for e in events} == {None}
    assert events[0].payload["origin"] == "kill_switch"
    assert events[2].payload["status"] == "submitted"
    cancelled = events[3].payload
    assert (cancelled["client_order_id"], cancelled["status"]) == (ids[1], "cancelled")
    assert cancelled["error"] == "cancelled by the kill switch, unsent"


def test_transition_when_refused_then_no_event(ledger: Ledger, decided: Decision) -> None:
    before = ledger.events.last_id()

    with pytest.raises(InvalidTransition):
        ledger.orders.transition(coid_of(decided), OrderEvent.ACCEPT, T0)

    assert ledger.events.last_id() == before


def test_set_control_when_kill_switch_and_breaker_then_safety_events_with_trading_state(
    ledger: Ledger,
) -> None:
    ledger.safety.set_control(Control.KILL_SWITCH, True, "drill", T0)
    ledger.safety.set_control(Control.RECONCILIATION, True, "pending", T0, event="pending")
    until = T0 + timedelta(hours=1)
    ledger.safety.set_control(Control.CIRCUIT_BREAKER, True, "losses", T0, until, "tripped")
    ledger.safety.set_control(Control.KILL_SWITCH, False, "over", T0 + timedelta(minutes=1))

    events = ledger.events.after(0)

    assert kinds(events) == [K.KILL_SWITCH, K.CIRCUIT_BREAKER, K.KILL_SWITCH]
    kill, breaker, cleared = (e.payload for e in events)
    assert kill == kill | {"active": True, "reason": "drill", "trading_state": "halted"}
    assert kill["halt_cause"] == "kill_switch"
    assert breaker == breaker | {"step": "tripped", "until": until.isoformat()}
    assert cleared == cleared | {"active": False, "step": "cleared"}
    assert cleared["halt_cause"] == "circuit_breaker"  # the breaker still halts
    assert {e.channel.value for e in events} == {"safety"}


def test_signed_requests_when_they_change_a_control_then_one_event_each(ledger: Ledger) -> None:
    ledger.requests.set_kill_switch(True, "ops", "a1" * 32, T0, "127.0.0.1", 1)
    ledger.requests.set_kill_switch(True, "again", "a2" * 32, T0, "127.0.0.1", 2)  # no change
    assert ledger.requests.reset_circuit_breaker("early", "a3" * 32, T0, None, 3) is False
    ledger.safety.set_control(Control.CIRCUIT_BREAKER, True, "losses", T0, event="tripped")
    assert ledger.requests.reset_circuit_breaker("early", "a4" * 32, T0, None, 4) is True

    events = ledger.events.after(0)

    assert kinds(events) == [K.KILL_SWITCH, K.CIRCUIT_BREAKER, K.CIRCUIT_BREAKER]
    assert events[0].payload["step"] == "activated"
    assert events[2].payload == events[2].payload | {"step": "reset_early", "active": False}


def test_breaker_reset_when_not_tripped_then_its_row_is_left_as_it_was(ledger: Ledger) -> None:
    # Its clearing time is where the breaker's thresholds count from (services.circuit_breaker):
    # a reset of a breaker that is not tripped must not move it.
    ledger.safety.set_control(Control.CIRCUIT_BREAKER, True, "losses", T0, event="tripped")
    cleared = T0 + timedelta(hours=1)
    ledger.safety.set_control(Control.CIRCUIT_BREAKER, False, "cooldown over", cleared)
    later = T0 + timedelta(hours=5)
    assert ledger.requests.reset_circuit_breaker("early", "a5" * 32, later, None, 5) is False
    control = ledger.safety.control(Control.CIRCUIT_BREAKER)
    assert control is not None
    assert (control.active, control.reason, control.changed_at) == (False, "cooldown over", cleared)
