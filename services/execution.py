"""Order execution: submit once per client order id, settle simulated fills, keep the ledger's
order states in step with the broker's, record everything."""

from __future__ import annotations

from core.candles.bar import Bar
from core.clock import Clock
from core.errors import FatalError, FatalExchangeError
from core.orders import Fill, Order, OrderEvent, OrderOrigin, OrderStatus
from core.ports import Broker, BrokerOrder, Ledger, SimulatedExchange
from core.types import ClientOrderId, Symbol

# What a broker's view of an order means for the ledger's copy of it.
_FOLLOW = {
    OrderStatus.ACCEPTED: OrderEvent.ACCEPT,
    OrderStatus.CANCELLED: OrderEvent.CANCEL,
    OrderStatus.EXPIRED: OrderEvent.EXPIRE,
    OrderStatus.REJECTED: OrderEvent.REJECT,
}


class OrderNotRecorded(FatalError):
    pass


def submit_order(
    ledger: Ledger, broker: Broker, client_order_id: ClientOrderId, clock: Clock
) -> Order:
    """Send a recorded order to the broker at most once, however often this is retried.

    The order row exists before any attempt (written with its decision). A retry after an
    unknown outcome asks the broker for the client id before sending anything. An order whose
    trading was halted after it was decided (kill switch, breaker) is cancelled, not sent.
    """
    order = ledger.orders.get(client_order_id)
    if order is None:
        raise OrderNotRecorded(f"order {client_order_id} is not in the ledger; refusing to send it")
    if order.status is not OrderStatus.NEW:
        return order
    flags = ledger.safety.flags(clock.now())
    halted = flags.kill_switch_reason or flags.breaker_reason
    if halted is not None and order.origin is OrderOrigin.DECISION:
        return ledger.orders.transition(
            client_order_id,
            OrderEvent.CANCEL,
            clock.now(),
            error=f"halted before sending: {halted}",
        )
    ledger.orders.mark_submit_attempt(client_order_id, clock.now())
    placed = broker.get_order(client_order_id, order.symbol)
    if placed is None:
        try:
            placed = broker.place(order)
        except FatalExchangeError as exc:
            return ledger.orders.transition(
                client_order_id, OrderEvent.REJECT, clock.now(), error=str(exc)
            )
    submitted = ledger.orders.transition(client_order_id, OrderEvent.SUBMIT, clock.now())
    return follow_broker(ledger, submitted, placed, clock)


def follow_broker(ledger: Ledger, order: Order, seen: BrokerOrder, clock: Clock) -> Order:
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
    ledger: Ledger,
    exchange: SimulatedExchange,
    account: str,
    symbol: Symbol,
    bar: Bar,
    clock: Clock,
) -> list[Fill]:
    """Match working simulated orders of `symbol` against this candle; record the fills and
    every state the exchange moved an order to (a confirmed cancel, say)."""
    fills = exchange.on_candle(symbol, bar)
    recorded = [f for f in fills if ledger.fills.record(account, f)]
    for order in ledger.orders.open(account, symbol):
        seen = exchange.get_order(order.client_order_id, order.symbol)
        if seen is not None:
            follow_broker(ledger, order, seen, clock)
    return recorded
