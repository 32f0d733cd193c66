"""Order execution: submit once per client order id, settle paper fills, record everything."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from core.clock import Clock
from core.orders import Fill, Order, OrderEvent, OrderStatus
from core.ports import Broker, FatalBrokerError
from core.types import ClientOrderId, to_decimal
from infra.brokers.paper import PaperBroker
from infra.ledger.repository import Ledger, UnknownOrder


def submit_order(
    ledger: Ledger, broker: Broker, client_order_id: ClientOrderId, clock: Clock
) -> Order:
    """Send a recorded order to the broker at most once, however often this is retried.

    The order row exists before any attempt (written with its decision). A retry after an
    unknown outcome asks the broker for the client id before sending anything.
    """
    order = ledger.get_order(client_order_id)
    if order is None:
        raise UnknownOrder(f"order {client_order_id} is not in the ledger; refusing to send it")
    if order.status is not OrderStatus.NEW:
        return order
    ledger.mark_submit_attempt(client_order_id, clock.now())
    placed = broker.get_order(client_order_id)
    if placed is None:
        try:
            placed = broker.place(order)
        except FatalBrokerError as exc:
            return ledger.transition_order(
                client_order_id, OrderEvent.REJECT, clock.now(), error=str(exc)
            )
    return ledger.transition_order(client_order_id, OrderEvent.SUBMIT, clock.now())


def settle_paper_fills(
    ledger: Ledger,
    broker: PaperBroker,
    account: str,
    symbol: str,
    candle_open_time: datetime,
    open_price: float | Decimal,
) -> list[Fill]:
    """Fill working paper orders of `symbol` at this candle's open and record the fills."""
    broker.adopt(ledger.orders(account, OrderStatus.SUBMITTED, symbol))
    fills = broker.match(symbol, candle_open_time, to_decimal(open_price))
    return [f for f in fills if ledger.record_fill(account, f)]
