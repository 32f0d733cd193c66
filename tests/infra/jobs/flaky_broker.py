"""A paper broker that accepts an order, then loses the answer: the ambiguous timeout."""

from __future__ import annotations

from decimal import Decimal

from core.orders import Order
from core.ports import RetryableBrokerError
from infra.brokers.paper import PaperBroker


class AcceptThenTimeout(PaperBroker):
    def __init__(self, failures: int = 1) -> None:
        super().__init__(Decimal("5"), Decimal("0.001"))
        self.failures = failures
        self.place_calls = 0

    def place(self, order: Order) -> Order:
        self.place_calls += 1
        placed = super().place(order)  # the exchange has it now
        if self.failures > 0:
            self.failures -= 1
            raise RetryableBrokerError(f"timeout after sending {order.client_order_id}")
        return placed
