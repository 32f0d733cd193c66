"""Dummy broker for dry runs: accepts and records every order, fills nothing, moves no money."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from core.errors import FatalExchangeError
from core.orders import Fill, Order, OrderStatus
from core.ports import Balance, BrokerOrder
from core.types import ClientOrderId, Symbol


class DummyBroker:
    name = "dummy"

    def __init__(self) -> None:
        self.placed: dict[ClientOrderId, BrokerOrder] = {}

    def place(self, order: Order) -> BrokerOrder:
        return self.placed.setdefault(
            order.client_order_id,
            BrokerOrder(
                order.client_order_id,
                f"dummy-{len(self.placed) + 1}",
                order.symbol,
                order.side,
                OrderStatus.ACCEPTED,
                order.quantity,
                Decimal(0),
                None,
                order.limit_price,
            ),
        )

    def cancel(self, client_order_id: ClientOrderId, symbol: Symbol) -> BrokerOrder:
        known = self.placed.get(client_order_id)
        if known is None:
            raise FatalExchangeError(f"{client_order_id}: unknown order, nothing to cancel")
        self.placed[client_order_id] = replace(known, status=OrderStatus.CANCELLED)
        return self.placed[client_order_id]

    def get_order(self, client_order_id: ClientOrderId, symbol: Symbol) -> BrokerOrder | None:
        return self.placed.get(client_order_id)

    def open_orders(self, symbol: Symbol | None = None) -> list[BrokerOrder]:
        return [
            o
            for o in self.placed.values()
            if o.status.is_open and (symbol is None or o.symbol == symbol)
        ]

    def fills(self, symbol: Symbol, since: datetime | None = None) -> list[Fill]:
        return []

    def balances(self) -> dict[str, Balance]:
        return {}

    def positions(self, symbols: Sequence[Symbol]) -> dict[Symbol, Decimal]:
        return dict.fromkeys(symbols, Decimal(0))
