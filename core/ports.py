"""What the domain needs from the outside world, as Protocols (no adapter imports here)."""

from __future__ import annotations

from typing import Protocol

from core.orders import Order
from core.types import ClientOrderId


class BrokerError(Exception):
    pass


class RetryableBrokerError(BrokerError):
    """The outcome is unknown or the broker is unreachable: look the order up, then retry."""


class FatalBrokerError(BrokerError):
    """The broker refused the order; retrying the same order cannot help."""


class Broker(Protocol):
    """Places orders idempotently: a client order id the broker already holds is not re-sent."""

    name: str

    def place(self, order: Order) -> Order: ...

    def get_order(self, client_order_id: ClientOrderId) -> Order | None: ...
