"""Order execution: submit once per client order id, settle simulated fills, keep the ledger's
order states in step with the broker's, record everything."""

from __future__ import annotations

import logging
from datetime import timedelta

from core.candles.bar import Bar
from core.clock import Clock
from core.errors import FatalError, FatalExchangeError
from core.orders import Fill, Order, OrderEvent, OrderOrigin, OrderStatus
from core.ports import Broker, BrokerOrder, SimulatedExchange, TradingLedger
from core.types import ClientOrderId, Symbol
from services.correlation import bound

log = logging.getLogger("tradeflow.orders")

# What a broker's view of an order means for the ledger's copy of it.
_FOLLOW = {
    OrderStatus.ACCEPTED: OrderEvent.ACCEPT,
    OrderStatus.CANCELLED: OrderEvent.CANCEL,
    OrderStatus.EXPIRED: OrderEvent.EXPIRE,
    OrderStatus.REJECTED: OrderEvent.REJECT,
}


class OrderNotRecorded(FatalError):
    pass


class OrdersNotSent(FatalError):
    """Some approved orders could not be sent; the others were. The next run sends (or, when
    stale, cancels) what is left."""


def submit_order(
    ledger: TradingLedger,
    broker: Broker,
    client_order_id: ClientOrderId,
    clock: Clock,
    max_age: timedelta | None = None,
) -> Order:
    """Send a recorded order to the broker at most once, however often this is retried.

    The order row exists before any attempt (written with its decision). A retry after an
    unknown outcome asks the broker for the client id before sending anything. An order whose
    trading was halted after it was decided (kill switch, breaker) is cancelled, not sent.
    Claiming the order for sending and the kill switch cancelling an unsent one exclude each
    other in the ledger; if the kill switch lands while the order is in flight, the order is
    cancelled at the exchange as soon as it has arrived there.
    """
    order = ledger.orders.get(client_order_id)
    if order is None:
        raise OrderNotRecorded(f"order {client_order_id} is not in the ledger; refusing to send it")
    with bound(correlation_id=order.decision_id):  # its events and log lines: the decision's
        sent = _submit(ledger, broker, order, clock, max_age)
        log.debug("order %s: %s", client_order_id, sent.status.value)
        return sent


def _submit(
    ledger: TradingLedger, broker: Broker, order: Order, clock: Clock, max_age: timedelta | None
) -> Order:
    client_order_id = order.client_order_id
    if order.status is not OrderStatus.NEW:
        return order
    halted = _halted(ledger, order, clock)
    if halted is not None:
        error = f"halted before sending: {halted}"
        return ledger.orders.transition(client_order_id, OrderEvent.CANCEL, clock.now(), error)
    if not ledger.orders.claim_for_sending(client_order_id, clock.now()):
        return ledger.orders.get(client_order_id) or order  # the kill switch cancelled it
    placed = broker.get_order(client_order_id, order.symbol)
    if placed is None and max_age is not None and clock.now() - order.market_time > max_age:
        error = f"not sent: its candle closed {clock.now() - order.market_time} ago (max {max_age})"
        return ledger.orders.transition(client_order_id, OrderEvent.CANCEL, clock.now(), error)
    if placed is None:
        try:
            placed = broker.place(order)
        except FatalExchangeError as exc:
            return ledger.orders.transition(
                client_order_id, OrderEvent.REJECT, clock.now(), error=str(exc)
            )
    submitted = ledger.orders.mark_submitted(client_order_id, clock.now())
    if submitted is None:  # the kill switch found it at the exchange first and cancels it
        return ledger.orders.get(client_order_id) or order
    return _cancel_if_halted(ledger, broker, follow_broker(ledger, submitted, placed, clock), clock)


def _halted(ledger: TradingLedger, order: Order, clock: Clock) -> str | None:
    """Why a decision's or an operator's order may not be (or stay) out there now; None when
    it may. The kill switch's own closing orders are never held back."""
    if order.origin is OrderOrigin.KILL_SWITCH:
        return None
    flags = ledger.safety.flags(clock.now())
    return flags.kill_switch_reason or flags.breaker_reason


def _cancel_if_halted(ledger: TradingLedger, broker: Broker, order: Order, clock: Clock) -> Order:
    """The kill switch (or the breaker) came while this order was being sent: cancel it at the
    exchange now that it is there."""
    if not order.status.is_open or _halted(ledger, order, clock) is None:
        return order
    pending = ledger.orders.transition(
        order.client_order_id, OrderEvent.REQUEST_CANCEL, clock.now()
    )
    return follow_broker(ledger, pending, broker.cancel(order.client_order_id, order.symbol), clock)


def unsent_orders(ledger: TradingLedger, account: str) -> list[ClientOrderId]:
    """Decisions' orders recorded and not sent yet (a run that failed between recording and
    sending leaves them): the next run sends them, or cancels them if they are stale."""
    new = ledger.orders.find(account, status=OrderStatus.NEW)
    return [o.client_order_id for o in new if o.origin is OrderOrigin.DECISION]


def follow_broker(ledger: TradingLedger, order: Order, seen: BrokerOrder, clock: Clock) -> Order:
    """Bring the ledger's order to the broker's state (fills are recorded separately)."""
    event = event_to_follow(order.status, seen)
    if event is None:
        return order
    return ledger.orders.transition(order.client_order_id, event, clock.now())


def event_to_follow(status: OrderStatus, seen: BrokerOrder) -> OrderEvent | None:
    """The event that brings an order in `status` to what the broker reports, if any."""
    event = _FOLLOW.get(seen.status)
    if event is None or status.is_terminal:
        return None
    if event is OrderEvent.ACCEPT and status is not OrderStatus.SUBMITTED:
        return None
    return event


def settle_simulated(
    ledger: TradingLedger,
    exchange: SimulatedExchange,
    account: str,
    symbol: Symbol,
    bar: Bar,
    clock: Clock,
) -> list[Fill]:
    """Match working simulated orders of `symbol` against this candle; record the fills and
    every state the exchange moved an order to (a confirmed cancel, say)."""
    fills = exchange.on_candle(symbol, bar)
    recorded = [f for f in fills if _record_fill(ledger, account, f)]
    for order in ledger.orders.open(account, symbol):
        seen = exchange.get_order(order.client_order_id, order.symbol)
        if seen is not None:
            with bound(correlation_id=order.decision_id):
                follow_broker(ledger, order, seen, clock)
    return recorded


def _record_fill(ledger: TradingLedger, account: str, fill: Fill) -> bool:
    """Record a fill under its order's decision id; False when it was recorded before."""
    order = ledger.orders.get(fill.client_order_id)
    with bound(correlation_id=None if order is None else order.decision_id):
        if not ledger.fills.record(account, fill):
            return False
        log.debug("fill %s of order %s: %s %s", fill.fill_id, fill.client_order_id,
                  fill.quantity, fill.price)  # fmt: skip
        return True
