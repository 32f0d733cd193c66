"""What the domain needs from the outside world, as Protocols (no adapter imports here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from core.orders import Fill, Order, OrderStatus
from core.types import ClientOrderId, Side, Symbol


class BrokerError(Exception):
    pass


class RetryableBrokerError(BrokerError):
    """The outcome is unknown or the broker is unreachable: look the order up, then retry."""


class FatalBrokerError(BrokerError):
    """The broker refused the order; retrying the same order cannot help."""


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """An order as the broker sees it."""

    client_order_id: ClientOrderId
    exchange_order_id: str | None
    symbol: Symbol
    side: Side
    status: OrderStatus
    quantity: Decimal
    filled: Decimal
    average_price: Decimal | None = None
    limit_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    free: Decimal
    used: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.used


class Broker(Protocol):
    """One interface for every venue. Never-twice is the caller's lookup: submit_order asks
    `get_order` for the client order id before it calls `place`, so a send whose answer was lost
    is found, not repeated. `place` itself only sends."""

    name: str

    def place(self, order: Order) -> BrokerOrder: ...

    def cancel(self, client_order_id: ClientOrderId, symbol: Symbol) -> BrokerOrder: ...

    def get_order(self, client_order_id: ClientOrderId, symbol: Symbol) -> BrokerOrder | None: ...

    def open_orders(self, symbol: Symbol | None = None) -> Sequence[BrokerOrder]: ...

    def fills(self, symbol: Symbol, since: datetime | None = None) -> Sequence[Fill]: ...

    def balances(self) -> dict[str, Balance]: ...

    def positions(self, symbols: Sequence[Symbol]) -> dict[Symbol, Decimal]: ...
