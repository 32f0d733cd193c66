"""The order state machine: the legal paths, illegal events, and properties over random event
sequences (hypothesis): never overfilled, exact weighted average, terminal states final."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.orders import (
    TERMINAL,
    InvalidTransition,
    Order,
    OrderEvent,
    OrderStatus,
    OrderType,
    Overfill,
    client_order_id_for,
    decision_id_for,
)
from core.types import ClientOrderId, Side, Symbol

T0 = datetime(2024, 9, 1, 12, tzinfo=UTC)
S, E = OrderStatus, OrderEvent


def order(quantity: str = "1", status: OrderStatus = S.NEW) -> Order:
    did = decision_id_for("paper", "BTC/USDT", "1h", T0)
    return Order(
        client_order_id_for(did), did, Symbol("BTC/USDT"), Side.BUY, Decimal(quantity), T0, T0,
        status=status,
    )  # fmt: skip


def test_order_when_submitted_accepted_and_filled_in_two_parts_then_filled_at_weighted_price() -> (
    None
):
    o = order("1.0").apply(E.SUBMIT).apply(E.ACCEPT)
    o = o.fill(Decimal("0.4"), Decimal("100"))
    assert o.status is S.PARTIALLY_FILLED
    o = o.fill(Decimal("0.6"), Decimal("110"))
    assert o.status is S.FILLED
    assert o.average_price == Decimal("106")
    assert o.remaining == 0


def test_order_when_market_fill_without_accept_then_filled() -> None:
    assert order().apply(E.SUBMIT).fill(Decimal(1), Decimal(5)).status is S.FILLED


def test_order_when_cancel_races_a_fill_then_fill_applied_and_cancel_still_pending() -> None:
    o = order("1").apply(E.SUBMIT).apply(E.ACCEPT).apply(E.REQUEST_CANCEL)
    o = o.fill(Decimal("0.3"), Decimal(10))
    assert (o.status, o.filled_quantity) == (S.CANCEL_PENDING, Decimal("0.3"))
    assert o.apply(E.CANCEL).status is S.CANCELLED
    assert o.apply(E.CANCEL_REJECTED).status is S.PARTIALLY_FILLED
    # The fill that completes the order wins the race outright.
    assert o.fill(Decimal("0.7"), Decimal(10)).status is S.FILLED


def test_order_when_cancel_rejected_without_fills_then_back_to_accepted() -> None:
    o = order().apply(E.SUBMIT).apply(E.ACCEPT).apply(E.REQUEST_CANCEL)
    assert o.apply(E.CANCEL_REJECTED).status is S.ACCEPTED


@pytest.mark.parametrize(
    ("status", "event"),
    [
        (S.NEW, E.ACCEPT),
        (S.NEW, E.REQUEST_CANCEL),
        (S.SUBMITTED, E.SUBMIT),
        (S.ACCEPTED, E.REJECT),
        (S.FILLED, E.CANCEL),
        (S.CANCELLED, E.SUBMIT),
        (S.REJECTED, E.SUBMIT),
        (S.EXPIRED, E.REQUEST_CANCEL),
    ],
)
def test_order_when_illegal_event_then_raises_and_order_unchanged(
    status: OrderStatus, event: OrderEvent
) -> None:
    o = order(status=status)
    with pytest.raises(InvalidTransition, match=f"{status} -/-> {event}"):
        o.apply(event)
    assert o.status is status


def test_order_when_fill_exceeds_quantity_then_overfill_and_nothing_applied() -> None:
    o = order("1").apply(E.SUBMIT).fill(Decimal("0.6"), Decimal(1))
    with pytest.raises(Overfill, match=r"would make 1\.2 of 1"):
        o.fill(Decimal("0.6"), Decimal(1))
    assert o.filled_quantity == Decimal("0.6")


def test_order_when_new_or_terminal_then_cannot_be_filled() -> None:
    for status in (S.NEW, *TERMINAL):
        with pytest.raises(InvalidTransition):
            order(status=status).fill(Decimal("0.1"), Decimal(1))


def test_order_when_limit_without_price_then_refused() -> None:
    with pytest.raises(ValueError, match="limit price"):
        Order(
            ClientOrderId("x"), decision_id_for("a", "b", "1h", T0), Symbol("B"), Side.BUY,
            Decimal(1), T0, T0, order_type=OrderType.LIMIT,
        )  # fmt: skip


EVENTS = st.one_of(
    st.sampled_from([e for e in OrderEvent if e is not E.FILL]),
    st.tuples(
        st.decimals("0.001", "0.6", places=3), st.decimals("1", "100000", places=2)
    ),  # a fill: quantity, price
)


@settings(max_examples=500)
@given(st.lists(EVENTS, max_size=25))
def test_order_property_when_random_event_sequences_then_invariants_hold(events) -> None:  # type: ignore[no-untyped-def]
    current = order("1")
    fills: list[tuple[Decimal, Decimal]] = []
    for event in events:
        before = current
        try:
            if isinstance(event, tuple):
                current = current.fill(*event)
                fills.append(event)
            else:
                current = current.apply(event)
        except InvalidTransition:
            assert current == before  # an illegal event changes nothing
        if before.status.is_terminal:
            assert current == before  # a terminal state never changes
        assert current.filled_quantity <= current.quantity
        assert current.filled_quantity == sum((q for q, _ in fills), Decimal(0))
        if fills:
            weighted = sum((q * p for q, p in fills), Decimal(0)) / current.filled_quantity
            assert current.average_price == weighted
        assert (current.status is S.FILLED) == (current.filled_quantity == current.quantity)
