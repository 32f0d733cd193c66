"""What the API lists from the ledger: pages of orders, trades and decisions (newest first, with
an opaque keyset cursor), and positions marked at the last candle close.

A cursor is the sort key of the last row a page showed ("after this one, older"), so a row
written while a client pages never shifts the pages it has not read yet, and every row is
listed exactly once. It is base64url JSON: opaque to clients, checked whole when it comes back.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from core.agents.calls import AgentCall, AgentUsage
from core.errors import FatalError
from core.orders import OrderStatus
from core.records import DecisionRecord, StoredOrder
from core.types import Action, Symbol

T = TypeVar("T")
ZERO = Decimal(0)
MAX_PAGE = 500  # rows a page may hold: a client pages on rather than asking for everything


class BadCursor(FatalError, ValueError):
    """A cursor this listing did not hand out (garbled, edited, or another listing's)."""


class Listing(StrEnum):
    """Which listing a cursor belongs to: one listing's cursor means nothing to another."""

    ORDERS = "o"
    TRADES = "t"
    DECISIONS = "d"


@dataclass(frozen=True, slots=True)
class Cursor:
    """The sort key of the last row shown: the next page holds the rows older than it."""

    listing: Listing
    at: datetime
    key: str

    def encode(self) -> str:
        raw = json.dumps([self.listing.value, self.at.isoformat(), self.key], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, listing: Listing) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            tag, at, key = json.loads(raw.decode())
            moment = datetime.fromisoformat(at)
        except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as exc:
            raise BadCursor(f"cursor {text[:40]!r} is not one this API handed out") from exc
        if tag != listing.value or not isinstance(key, str) or not key.isprintable():
            raise BadCursor(f"cursor {text[:40]!r} does not belong to this listing")
        if moment.tzinfo is None:
            raise BadCursor(f"cursor {text[:40]!r} holds a time without its offset")
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:  # year 1 ahead of UTC, or year 9999 behind it: no such time
            raise BadCursor(f"cursor {text[:40]!r} holds a time outside UTC's range") from None
        return cls(listing, moment, key)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    next_cursor: str | None  # None: this was the last page


# The listings' rows hold the text the API shows: decimals plain without trailing zeros ("0.01",
# never "0.0100" or "1E+2"; "0" for any zero), times ISO 8601 in UTC ("2024-02-03T09:00:00+00:00",
# microseconds only when there are some). A page of them is built straight from the database's
# rows, with no Decimal, datetime or domain object per value: the API's busiest reads.


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One order as a listing shows it."""

    client_order_id: str
    decision_id: str | None
    origin: str  # OrderOrigin's value
    symbol: str
    side: str  # Side's
    order_type: str  # OrderType's
    status: str  # OrderStatus's
    quantity: str
    limit_price: str | None
    filled_quantity: str
    average_price: str | None  # None before any fill
    created_at: str
    updated_at: str
    market_time: str
    broker: str
    submit_attempts: int
    error: str | None


@dataclass(frozen=True, slots=True)
class TradeLine:
    """One fill as a listing shows it, with the order it filled and its realised P&L."""

    fill_id: str
    client_order_id: str
    decision_id: str | None
    origin: str  # the order's OrderOrigin value
    order_type: str
    symbol: str
    side: str
    quantity: str
    price: str
    notional: str  # quantity x price
    fee: str
    fee_in_base: bool
    realised_pnl: str
    filled_at: str


@dataclass(frozen=True, slots=True)
class DecisionEntry:
    """A decision with what its LLM calls came to; `calls` in full only when asked for."""

    record: DecisionRecord
    usage: AgentUsage
    calls: tuple[AgentCall, ...] = ()


@dataclass(frozen=True, slots=True)
class Mark:
    """The newest stored candle of a symbol: its close is the mark price."""

    symbol: Symbol
    open_time: datetime
    close_time: datetime
    close: Decimal


@dataclass(frozen=True, slots=True)
class PositionView:
    symbol: Symbol
    quantity: Decimal
    avg_price: Decimal
    realised_pnl: Decimal  # net of fees, over the position's whole history
    updated_at: datetime
    mark: Mark | None = None  # None: no candle stored for the symbol

    @property
    def notional(self) -> Decimal | None:
        return None if self.mark is None else self.quantity * self.mark.close

    @property
    def unrealised_pnl(self) -> Decimal | None:
        return None if self.mark is None else (self.mark.close - self.avg_price) * self.quantity


@dataclass(frozen=True, slots=True)
class OrderQuery:
    status: OrderStatus | None = None
    symbol: str | None = None
    since: datetime | None = None  # created at or after
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class TradeQuery:
    symbol: str | None = None
    since: datetime | None = None  # filled at or after
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class DecisionQuery:
    symbol: str | None = None
    action: Action | None = None
    since: datetime | None = None  # on candles opening at or after
    limit: int = 50
    cursor: str | None = None
    calls: bool = False  # every call in full, not only what they came to


@dataclass(frozen=True, slots=True)
class Closes:
    """Closes of one symbol's candles, oldest first, by close time."""

    symbol: Symbol
    times: Sequence[datetime] = field(default_factory=tuple)
    closes: Sequence[Decimal] = field(default_factory=tuple)


class BrowseQueries(Protocol):
    """The API's read models over one account's orders, fills, decisions and positions."""

    def orders(self, account: str, query: OrderQuery) -> Page[OrderLine]: ...

    def order(self, account: str, client_order_id: str) -> StoredOrder | None: ...

    def trades(self, account: str, query: TradeQuery) -> Page[TradeLine]: ...

    def decisions(self, account: str, query: DecisionQuery) -> Page[DecisionEntry]: ...

    def positions(self, account: str, exchange: str, timeframe: str) -> list[PositionView]:
        """Open positions (quantity above zero), each marked at its newest candle's close."""
        ...

    def marks(
        self, exchange: str, symbols: Sequence[str], timeframe: str
    ) -> Mapping[Symbol, Mark]: ...

    def closes(
        self, exchange: str, symbols: Sequence[str], timeframe: str, since: datetime
    ) -> Mapping[Symbol, Closes]:
        """Every close of candles closing at or after `since`, per symbol."""
        ...
