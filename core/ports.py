"""What the domain needs from the outside world, as Protocols (no adapter imports here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import pandas as pd

from core.orders import Fill, Order
from core.types import ClientOrderId


class Broker(Protocol):
    """Places orders idempotently by client order id."""

    name: str

    def place(self, order: Order) -> Order:
        """Send the order; placing a client id the broker already holds returns that order."""
        ...

    def get_order(self, client_order_id: ClientOrderId) -> Order | None: ...

    def fills_for_candle(self, candle: pd.Series) -> Sequence[Fill]:
        """Fills the orders it holds for candle['symbol'] that this candle can execute."""
        ...
