"""Value types shared across the domain: ids, enums, money."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import NewType

Symbol = NewType("Symbol", str)
ClientOrderId = NewType("ClientOrderId", str)
DecisionId = NewType("DecisionId", str)


class Action(StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


def base_of(symbol: str) -> str:
    """'BTC/USDT' -> 'BTC' (ccxt's unified symbols; 'BTC/USDT:USDT' for a swap)."""
    return symbol.split("/")[0]


def quote_of(symbol: str) -> str:
    """'BTC/USDT' -> 'USDT'; 'BTC/USDT:USDT' -> 'USDT'."""
    return symbol.split("/")[1].split(":")[0]


def to_decimal(value: float | int | str | Decimal) -> Decimal:
    """Floats enter the money domain through their shortest repr, never their binary expansion."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(float(value)))  # numpy floats repr as "np.float64(...)"
    return Decimal(value)


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def datetime_to_ms(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}: times in this system are UTC-aware")
    return int(ts.timestamp() * 1000)
