"""Orders, fills and candles written into a real ledger the way the system writes them (the
order recorded, sent, accepted, filled through Fills.record): what the read-model, service and
route tests of the API's resources build on."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd

from core.orders import Fill, Order, OrderEvent, OrderOrigin, OrderType
from core.ports import Ledger
from core.types import ClientOrderId, Side, Symbol

D = Decimal
BTC, ETH = Symbol("BTC/USDT"), Symbol("ETH/USDT")
ACCOUNT = "paper"
EXCHANGE = "binance"


def open_account(ledger: Ledger, cash: str = "10000", at: datetime | None = None) -> None:
    ledger.accounts.ensure(ACCOUNT, D(cash), at or datetime(2024, 1, 1, tzinfo=UTC))


def place(
    ledger: Ledger,
    coid: str,
    at: datetime,
    symbol: str = BTC,
    side: Side = Side.BUY,
    quantity: str = "0.01",
    *,
    accepted: bool = True,
    origin: OrderOrigin = OrderOrigin.MANUAL,
    limit_price: str | None = None,
    account: str = ACCOUNT,
) -> Order:
    """An order recorded at `at` and, when `accepted`, sent and accepted by the broker."""
    order = Order(
        client_order_id=ClientOrderId(coid),
        decision_id=None,
        symbol=Symbol(symbol),
        side=side,
        quantity=D(quantity),
        created_at=at,
        market_time=at,
        order_type=OrderType.MARKET if limit_price is None else OrderType.LIMIT,
        limit_price=None if limit_price is None else D(limit_price),
        origin=origin,
    )
    assert ledger.orders.insert_many([order], account, "paper") == {order.client_order_id}
    if accepted:
        ledger.orders.transition(order.client_order_id, OrderEvent.SUBMIT, at)
        return ledger.orders.transition(order.client_order_id, OrderEvent.ACCEPT, at)
    return order


def fill(
    ledger: Ledger,
    order: Order,
    price: str,
    at: datetime,
    quantity: str | None = None,
    fee: str = "0",
    account: str = ACCOUNT,
) -> Fill:
    done = Fill(
        order.client_order_id,
        order.symbol,
        order.side,
        D(quantity) if quantity is not None else order.quantity,
        D(price),
        D(fee),
        at,
        f"fill-{order.client_order_id}-{int(at.timestamp())}",
    )
    assert ledger.fills.record(account, done)
    return done


def trade(
    ledger: Ledger,
    symbol: str,
    side: Side,
    quantity: str,
    price: str,
    at: datetime,
    fee: str = "0",
) -> Fill:
    """An order placed and filled whole at `at`."""
    order = place(ledger, f"{symbol[:3].lower()}-{side.value}-{int(at.timestamp())}", at,
                  symbol, side, quantity)  # fmt: skip
    return fill(ledger, order, price, at, fee=fee)


def store_candles(
    ledger: Ledger,
    symbol: str,
    closes: Sequence[str | float],
    first_open: datetime,
    timeframe: str = "1h",
) -> None:
    """Candles of `timeframe` from `first_open`, one per close (open = high = low = close)."""
    step = pd.Timedelta(timeframe)
    opens = pd.date_range(first_open, periods=len(closes), freq=step, tz=UTC)
    values = [float(c) for c in closes]
    frame = pd.DataFrame({
        "open_time": opens, "open": values, "high": values, "low": values, "close": values,
        "volume": [100.0] * len(values),
    })  # fmt: skip
    ledger.candles.upsert(EXCHANGE, symbol, timeframe, frame)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)
