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
fate. With `state_path` the exchange's book outlives the process, as a real one does.
"""

from __future__ import annotations

import functools
import json
import os
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

from core.candles.bar import Bar
from core.errors import FatalExchangeError, OrderRejected
from core.orders import Fill, Order, OrderStatus, OrderType, status_after_fill
from core.ports import Balance, BrokerOrder
from core.types import ClientOrderId, Side, Symbol, base_of

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


@dataclass
class _Resting:
    order: BrokerOrder
    market_time: datetime
    order_type: OrderType
    candles_seen: int = 0
    cancel_requested: bool = False
    cancel_wait: int = 0
    fills: int = 0


@dataclass
class _Book:
    orders: dict[str, _Resting] = field(default_factory=dict)
    trades: list[Fill] = field(default_factory=list)
    assets: dict[str, Decimal] = field(default_factory=dict)
    # Per symbol, the keys of orders that may still be open: matching a candle looks at these
    # only, so its cost follows the working orders, not every order ever placed.
    working: dict[str, list[str]] = field(default_factory=dict)

    def add(self, key: str, resting: _Resting) -> None:
        self.orders[key] = resting
        self.working.setdefault(resting.order.symbol, []).append(key)

    def open_of(self, symbol: str) -> list[_Resting]:
        """The open orders of `symbol`, oldest first; forgets those that have closed."""
        keys = [k for k in self.working.get(symbol, ()) if self.orders[k].order.status.is_open]
        self.working[symbol] = keys
        return [self.orders[k] for k in keys]


F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    @functools.wraps(method)
    def wrapper(self: SimulatedBroker, *args: Any, **kwargs: Any) -> Any:
        with self._exclusive():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class SimulatedBroker:
    name = "paper"

    def __init__(self, config: SimulationConfig, state_path: Path | None = None) -> None:
        self.config = config
        self.state_path = state_path
        self._lock = FileLock(f"{state_path}.lock") if state_path else None
        self._book = self._fresh_book()
        with self._exclusive():
            pass  # on disk: reads the book, or writes a new one with its starting cash

    def _fresh_book(self) -> _Book:
        return _Book(assets={self.config.quote: self.config.starting_cash})

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """With a book on disk, every operation reads it, changes it and writes it back under a
        file lock, so the API process (kill switch) and the flow process share one exchange."""
        if self._lock is None or self.state_path is None:
            yield
            return
        with self._lock:
            self._book = self._load() if self.state_path.exists() else self._fresh_book()
            yield
            self._save()

    # -- the Broker interface --------------------------------------------------------------
    @_locked
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
        self._book.add(key, _Resting(accepted, order.market_time, order.order_type))
        return accepted

    @_locked
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

    @_locked
    def get_order(self, client_order_id: ClientOrderId, symbol: Symbol) -> BrokerOrder | None:
        resting = self._book.orders.get(client_order_id)
        return None if resting is None else resting.order

    @_locked
    def open_orders(self, symbol: Symbol | None = None) -> list[BrokerOrder]:
        symbols = list(self._book.working) if symbol is None else [symbol]
        return [r.order for s in symbols for r in self._book.open_of(s)]

    @_locked
    def duplicated_orders(self) -> int:
        """Orders opened a second time under a client id already held (never, if we behave)."""
        return sum("#dup" in key for key in self._book.orders)

    @_locked
    def fills(self, symbol: Symbol, since: datetime | None = None) -> list[Fill]:
        return [
            f
            for f in self._book.trades
            if f.symbol == symbol and (since is None or f.filled_at >= since)
        ]

    @_locked
    def balances(self) -> dict[str, Balance]:
        return {a: Balance(a, q, ZERO) for a, q in self._book.assets.items()}

    @_locked
    def positions(self, symbols: Sequence[Symbol]) -> dict[Symbol, Decimal]:
        return {s: self._book.assets.get(base_of(s), ZERO) for s in symbols}

    # -- the market ------------------------------------------------------------------------
    @_locked
    def working(self, symbol: Symbol) -> bool:
        return bool(self._book.open_of(symbol))

    @_locked
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

    def _match(self, resting: _Resting, bar: Bar) -> Fill | None:
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

    def _price(self, resting: _Resting, bar: Bar) -> Decimal | None:
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

    # -- persistence (the exchange outlives our process) -----------------------------------
    def _save(self) -> None:
        if self.state_path is None:
            return
        payload = {
            "orders": {
                k: {
                    "order": _plain(asdict(r.order)),
                    "market_time": r.market_time.isoformat(),
                    "order_type": r.order_type.value,
                    "candles_seen": r.candles_seen,
                    "cancel_requested": r.cancel_requested,
                    "cancel_wait": r.cancel_wait,
                    "fills": r.fills,
                }
                for k, r in self._book.orders.items()
            },
            "trades": [_plain(asdict(f)) for f in self._book.trades],
            "assets": {k: str(v) for k, v in self._book.assets.items()},
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload))
        os.replace(tmp, self.state_path)  # atomic: a kill leaves the old or the new book

    def _load(self) -> _Book:
        assert self.state_path is not None
        raw = json.loads(self.state_path.read_text())
        book = _Book()
        for key, r in raw["orders"].items():
            o = r["order"]
            book.add(
                key,
                _Resting(
                    BrokerOrder(
                        ClientOrderId(o["client_order_id"]),
                        o["exchange_order_id"],
                        Symbol(o["symbol"]),
                        Side(o["side"]),
                        OrderStatus(o["status"]),
                        Decimal(o["quantity"]),
                        Decimal(o["filled"]),
                        None if o["average_price"] is None else Decimal(o["average_price"]),
                        None if o["limit_price"] is None else Decimal(o["limit_price"]),
                    ),
                    datetime.fromisoformat(r["market_time"]),
                    OrderType(r["order_type"]),
                    r["candles_seen"],
                    r["cancel_requested"],
                    r["cancel_wait"],
                    r["fills"],
                ),
            )
        book.trades = [
            Fill(
                ClientOrderId(f["client_order_id"]),
                Symbol(f["symbol"]),
                Side(f["side"]),
                Decimal(f["quantity"]),
                Decimal(f["price"]),
                Decimal(f["fee"]),
                datetime.fromisoformat(f["filled_at"]),
                f["fill_id"],
            )
            for f in raw["trades"]
        ]
        book.assets = {k: Decimal(v) for k, v in raw["assets"].items()}
        return book


def _plain(d: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, Decimal):
            out[k] = str(v)
        elif isinstance(v, datetime):
            out[k] = v.isoformat()
        else:
            out[k] = v
    return out
