"""Value types shared across the domain: ids, enums, money."""

from __future__ import annotations

from collections.abc import Iterable
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
    # No opinion could be formed (the agents all abstained, or the LLM budget is spent): no
    # order, recorded as such rather than as a HOLD that looks like a view.
    NO_TRADE = "NO_TRADE"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class Quantity(Decimal):
    """An amount of an asset: a finite Decimal, never negative. Arithmetic gives plain Decimals;
    the type marks what a value is where it is stored, so a price cannot stand in for it."""

    __slots__ = ()

    def __new__(cls, value: object = "0") -> Quantity:
        if isinstance(value, Price):
            raise TypeError(f"a price ({value}) was given where a quantity belongs")
        number = Decimal.__new__(cls, _decimal_text(value))
        if not number.is_finite() or number < 0:
            raise ValueError(f"bad quantity {value!r}: must be finite and not negative")
        return number


class Price(Decimal):
    """A price in quote currency: a finite Decimal above zero."""

    __slots__ = ()

    def __new__(cls, value: object = "0") -> Price:
        if isinstance(value, Quantity):
            raise TypeError(f"a quantity ({value}) was given where a price belongs")
        number = Decimal.__new__(cls, _decimal_text(value))
        if not number.is_finite() or number <= 0:
            raise ValueError(f"bad price {value!r}: must be finite and above zero")
        return number


def _decimal_text(value: object) -> Decimal | str | int:
    if isinstance(value, float):
        return repr(float(value))  # the shortest repr, never the binary expansion
    if isinstance(value, Decimal | str | int):
        return value
    raise TypeError(f"not a number: {value!r}")


def as_quantity(value: Decimal | int | str) -> Quantity:
    return value if type(value) is Quantity else Quantity(value)


def as_price(value: Decimal | int | str) -> Price:
    return value if type(value) is Price else Price(value)


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


def floats_to_decimals(values: Iterable[float]) -> list[Decimal]:
    """`to_decimal` of each float, without its per-value type checks (a backtest's holds)."""
    return list(map(Decimal, map(float.__repr__, values)))


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def datetime_to_ms(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}: times in this system are UTC-aware")
    return int(ts.timestamp() * 1000)
