"""Simulated exchange: fees, slippage, partial fills, resting limit orders, latency, rejections
and cancel/fill races, all seeded and deterministic.

Orders match candle by candle, and only against candles that open at or after the order's
`market_time` (the close the decision saw): a fill never uses a price the decision could not
have known. Per candle:
- a market order fills at the open, moved against it by the slippage;
- a limit buy fills when the low reaches the limit, at min(open, limit); a limit sell when the
  high reaches it, at max(open, limit);
- at most `liquidity` x the candle's volume fills per order; the rest waits for the next candle;
- `latency_candles` delays when an order (and a cancel) takes effect; a cancel still in flight
  loses the race to the fills of the candle it arrives in.
A rejection is decided by a hash of (seed, client order id), so a retried order meets the same
fate. With `state_path` the exchange's book outlives the process, as a real one does, and is
shared by every process that opens it (the flow trades on it, the API's kill switch cancels on
it): see `infra.brokers.paper_book.DiskBook`.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, TypeVar

from core.candles.bar import Bar
from core.errors import FatalExchangeError, OrderRejected
from core.orders import Fill, Order, OrderStatus, OrderType, status_after_fill
from core.ports import Balance, BrokerOrder
from core.types import ClientOrderId, Side, Symbol, base_of
from infra.brokers.paper_book import DiskBook
from infra.brokers.sim_book import Book, Resting

_BPS = Decimal("0.0001")
_STEP = Decimal("0.00000001")
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    fee_rate: Decimal = Decimal("0.001")
    slippage_bps: Decimal = Decimal("5")
    liquidity: Decimal | None = None  # fraction of a candle's volume one order may take
    latency_candles: int = 0
    reject_rate: float = 0.0
    seed: int = 0
    starting_cash: Decimal = Decimal("10000")
    quote: str = "USDT"
    # False: like an exchange that does not enforce unique client ids, a second place() with
    # the same id opens a second order. Fault tests use it to prove we never send twice.
    unique_client_ids: bool = True


F = TypeVar("F", bound=Callable[..., Any])


def _on_book(write: bool) -> Callable[[F], F]:
    """With a book on disk, an operation first catches up with what other processes wrote; a
    read (write=False) then writes nothing, a write stores only the rows it changed. In memory
    the method runs bare: the backtest engine calls these once per candle."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapper(self: SimulatedBroker, *args: Any, **kwargs: Any) -> Any:
            disk = self._disk
            if disk is None:
                return method(self, *args, **kwargs)
            with disk.writing() if write else disk.reading() as book:
                self._book = book  # a failed transaction may have replaced the cache
                return method(self, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


_reads = _on_book(write=False)
_writes = _on_book(write=True)


class SimulatedBroker:
    name = "paper"

    def __init__(self, config: SimulationConfig, state_path: Path | None = None) -> None:
        self.config = config
        self.state_path = state_path
        self._disk = None if state_path is None else DiskBook(state_path, self._fresh_book())
        self._book = self._fresh_book() if self._disk is None else self._disk.book

    def _fresh_book(self) -> Book:
        return Book(assets={self.config.quote: self.config.starting_cash})

    # -- the Broker interface --------------------------------------------------------------
    @_writes
    def place(self, order: Order) -> BrokerOrder:
        key: str = order.client_order_id
        known = self._book.orders.get(key)
        if known is not None:
            if self.config.unique_client_ids:
                return known.order
            key = f"{key}#dup{len(self._book.orders)}"
        if self._rejects(order.client_order_id):
            raise OrderRejected(f"{order.client_order_id}: rejected by the simulated exchange")
        accepted = BrokerOrder(
            client_order_id=order.client_order_id,
            exchange_order_id=f"sim-{len(self._book.orders) + 1}",
            symbol=order.symbol,
            side=order.side,
            status=OrderStatus.ACCEPTED,
            quantity=order.quantity,
            filled=ZERO,
            limit_price=order.limit_price,
        )
        self._book.add(key, Resting(accepted, order.market_time, order.order_type))
        return accepted

    @_writes
    def cancel(self, client_order_id: ClientOrderId, symbol: Symbol) -> BrokerOrder:
        resting = self._book.orders.get(client_order_id)
        if resting is None:
            raise FatalExchangeError(f"{client_order_id}: unknown order, nothing to cancel")
        if resting.order.status.is_terminal:
            return resting.order
        if self.config.latency_candles:
            resting.cancel_requested = True
            resting.cancel_wait = self.config.latency_candles
            resting.order = replace(resting.order, status=OrderStatus.CANCEL_PENDING)
        else:
            resting.order = replace(resting.order, status=OrderStatus.CANCELLED)
        return resting.order

    @_reads
    def get_order(self, client_order_id: ClientOrderId, symbol: Symbol) -> BrokerOrder | None:
        resting = self._book.orders.get(client_order_id)
        return None if resting is None else resting.order

    @_reads
    def open_orders(self, symbol: Symbol | None = None) -> list[BrokerOrder]:
        symbols = list(self._book.working) if symbol is None else [symbol]
        return [r.order for s in symbols for r in self._book.open_of(s)]

    @_reads
    def duplicated_orders(self) -> int:
        """Orders opened a second time under a client id already held (never, if we behave)."""
        return sum("#dup" in key for key in self._book.orders)

    @_reads
    def fills(self, symbol: Symbol, since: datetime | None = None) -> list[Fill]:
        return [
            f
            for f in self._book.trades
            if f.symbol == symbol and (since is None or f.filled_at >= since)
        ]

    @_reads
    def balances(self) -> dict[str, Balance]:
        return {a: Balance(a, q, ZERO) for a, q in self._book.assets.items()}

    @_reads
    def positions(self, symbols: Sequence[Symbol]) -> dict[Symbol, Decimal]:
        return {s: self._book.assets.get(base_of(s), ZERO) for s in symbols}

    # -- the market ------------------------------------------------------------------------
    @_reads
    def working(self, symbol: Symbol) -> bool:
        return bool(self._book.open_of(symbol))

    @_writes
    def on_candle(self, symbol: Symbol, bar: Bar) -> list[Fill]:
        """Match every live order of `symbol` against this candle; return the new fills."""
        fills: list[Fill] = []
        for resting in self._book.open_of(symbol):
            if bar.open_time < resting.market_time:
                continue  # the decision's own candle or earlier: not a knowable price
            resting.candles_seen += 1
            if resting.candles_seen <= self.config.latency_candles:
                continue
            fill = self._match(resting, bar)
            if fill is not None:
                fills.append(fill)
            if resting.cancel_requested and resting.order.status.is_open:
                resting.cancel_wait -= 1
                if resting.cancel_wait <= 0:
                    resting.order = replace(resting.order, status=OrderStatus.CANCELLED)
        self._book.trades.extend(fills)
        return fills

    def _match(self, resting: Resting, bar: Bar) -> Fill | None:
        order = resting.order
        price = self._price(resting, bar)
        if price is None:
            return None
        qty = order.quantity - order.filled
        if self.config.liquidity is not None:
            qty = min(qty, (bar.volume * self.config.liquidity).quantize(_STEP, ROUND_DOWN))
        if qty <= 0:
            return None
        if order.side is Side.BUY:
            affordable = self._book.assets.get(self.config.quote, ZERO) / (
                price * (1 + self.config.fee_rate)
            )
            qty = min(qty, affordable.quantize(_STEP, ROUND_DOWN))
        else:
            qty = min(qty, self._book.assets.get(base_of(order.symbol), ZERO))
        if qty <= 0:
            return None
        fee = (price * qty * self.config.fee_rate).quantize(_STEP, ROUND_HALF_EVEN)
        base = base_of(order.symbol)
        sign = 1 if order.side is Side.BUY else -1
        self._book.assets[base] = self._book.assets.get(base, ZERO) + sign * qty
        quote = self._book.assets.get(self.config.quote, ZERO)
        self._book.assets[self.config.quote] = quote - sign * price * qty - fee
        filled = order.filled + qty
        cost = (order.average_price or ZERO) * order.filled + price * qty
        status = status_after_fill(order.status, filled, order.quantity)
        resting.order = replace(order, filled=filled, average_price=cost / filled, status=status)
        resting.fills += 1
        return Fill(
            order.client_order_id,
            order.symbol,
            order.side,
            qty,
            price,
            fee,
            bar.open_time,
            f"{order.client_order_id}-{resting.fills}",
        )

    def _price(self, resting: Resting, bar: Bar) -> Decimal | None:
        order = resting.order
        if resting.order_type is OrderType.MARKET:
            sign = 1 if order.side is Side.BUY else -1
            slip = self.config.slippage_bps * _BPS
            return (bar.open * (1 + sign * slip)).quantize(_STEP, ROUND_HALF_EVEN)
        limit = order.limit_price
        assert limit is not None
        if order.side is Side.BUY:
            return min(bar.open, limit) if bar.low <= limit else None
        return max(bar.open, limit) if bar.high >= limit else None

    def _rejects(self, client_order_id: str) -> bool:
        if self.config.reject_rate <= 0:
            return False
        return random.Random(f"{self.config.seed}:{client_order_id}").random() < (
            self.config.reject_rate
        )
