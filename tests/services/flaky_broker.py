"""A simulated exchange that accepts an order, then loses the answer: the ambiguous timeout."""

from __future__ import annotations

from core.errors import RetryableExchangeError
from core.orders import Order
from core.ports import BrokerOrder
from infra.brokers.simulated import SimulatedBroker, SimulationConfig


class AcceptThenTimeout(SimulatedBroker):
    def __init__(self, failures: int = 1) -> None:
        super().__init__(SimulationConfig())
        self.failures = failures
        self.place_calls = 0

    def place(self, order: Order) -> BrokerOrder:
        self.place_calls += 1
        placed = super().place(order)  # the exchange has it now
        if self.failures > 0:
            self.failures -= 1
            raise RetryableExchangeError(f"timeout after sending {order.client_order_id}")
        return placed
