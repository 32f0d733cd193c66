"""Orders: deterministic client ids and a small explicit state machine."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from core.types import ClientOrderId, DecisionId, Side, Symbol


class OrderStatus(StrEnum):
    NEW = "new"  # recorded in the ledger, not yet acknowledged by the broker
    SUBMITTED = "submitted"  # the broker holds it
    FILLED = "filled"
    REJECTED = "rejected"


class OrderEvent(StrEnum):
    SUBMIT = "submit"
    FILL = "fill"
    REJECT = "reject"


NEXT: Mapping[tuple[OrderStatus, OrderEvent], OrderStatus] = {
    (OrderStatus.NEW, OrderEvent.SUBMIT): OrderStatus.SUBMITTED,
    (OrderStatus.NEW, OrderEvent.REJECT): OrderStatus.REJECTED,
    (OrderStatus.SUBMITTED, OrderEvent.FILL): OrderStatus.FILLED,
    (OrderStatus.SUBMITTED, OrderEvent.REJECT): OrderStatus.REJECTED,
}


class InvalidTransition(Exception):
    pass


def decision_id_for(account: str, symbol: str, timeframe: str, candle_time: datetime) -> DecisionId:
    """One decision per account, symbol, timeframe and candle: a re-run finds the same id."""
    return DecisionId(f"{account}:{symbol}:{timeframe}:{int(candle_time.timestamp())}")


def client_order_id_for(decision_id: DecisionId) -> ClientOrderId:
    # Exchanges cap client ids (Binance: 36 chars of [.A-Z:/a-z0-9_-]); a hash keeps it short.
    return ClientOrderId("tf-" + hashlib.sha256(decision_id.encode()).hexdigest()[:32])


@dataclass(frozen=True, slots=True)
class Order:
    client_order_id: ClientOrderId
    decision_id: DecisionId
    symbol: Symbol
    side: Side
    quantity: Decimal
    created_at: datetime
    # Close of the candle the decision saw: a fill may only use prices from this moment on.
    market_time: datetime
    order_type: str = "market"
    status: OrderStatus = OrderStatus.NEW

    def __post_init__(self) -> None:
        if not isinstance(self.quantity, Decimal) or self.quantity <= 0:
            raise ValueError(f"{self.client_order_id}: bad quantity {self.quantity!r}")

    def apply(self, event: OrderEvent) -> Order:
        nxt = NEXT.get((self.status, event))
        if nxt is None:
            raise InvalidTransition(f"{self.client_order_id}: {self.status} -/-> {event}")
        return replace(self, status=nxt)


@dataclass(frozen=True, slots=True)
class Fill:
    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal  # in quote currency
    filled_at: datetime
    fill_id: str
