"""The simulated exchange's book in memory: its orders, trades and asset balances.

`SimulatedBroker` (infra.brokers.simulated) matches orders on it; `DiskBook`
(infra.brokers.paper_book) keeps it in a SQLite file that several processes share. It lives
apart from both so that each can use it without importing the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from core.orders import Fill, OrderType
from core.ports import BrokerOrder


@dataclass
class Resting:
    order: BrokerOrder
    market_time: datetime
    order_type: OrderType
    candles_seen: int = 0
    cancel_requested: bool = False
    cancel_wait: int = 0
    fills: int = 0


@dataclass
class Book:
    orders: dict[str, Resting] = field(default_factory=dict)
    trades: list[Fill] = field(default_factory=list)
    assets: dict[str, Decimal] = field(default_factory=dict)
    # Per symbol, the keys of orders that may still be open: matching a candle looks at these
    # only, so its cost follows the working orders, not every order ever placed.
    working: dict[str, list[str]] = field(default_factory=dict)

    def add(self, key: str, resting: Resting) -> None:
        self.orders[key] = resting
        self.working.setdefault(resting.order.symbol, []).append(key)

    def open_of(self, symbol: str) -> list[Resting]:
        """The open orders of `symbol`, oldest first; forgets those that have closed."""
        held = self.working.get(symbol)
        if not held:
            return []  # asking never gives a symbol a place: every process lists the same order
        keys = [k for k in held if self.orders[k].order.status.is_open]
        self.working[symbol] = keys
        return [self.orders[k] for k in keys]
