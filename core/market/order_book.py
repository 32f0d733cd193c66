"""Order-book snapshots and public trades: the live microstructure the candles cannot show.

A snapshot is the top N levels of each side at one moment. Its rows (one per level and side)
must pass ORDER_BOOK_SCHEMA: positive prices and amounts, bids strictly descending, asks strictly
ascending, levels numbered from 0 without holes, and a book that is not crossed (best bid below
best ask). A snapshot that fails is refused whole with a report naming the check.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

import pandas as pd
import pandera.pandas as pa

from core.errors import FatalError
from core.types import Side

Level = tuple[Decimal, Decimal]  # price, amount


class BookSide(StrEnum):
    BID = "bid"
    ASK = "ask"


class MarketDataError(FatalError, ValueError):
    """An order book or trade batch failed a check; nothing of it is stored."""

    def __init__(self, source: str, check: str, count: int, first_rows: list[object]):
        self.source, self.check, self.count, self.first_rows = source, check, count, first_rows
        super().__init__(
            f"{source}: check '{check}' failed for {count} row(s); first: {first_rows}"
        )


@dataclass(frozen=True, slots=True)
class OrderBookSnapshot:
    exchange: str
    symbol: str
    taken_at: datetime  # exchange timestamp when it gives one, else when we received it
    nonce: int | None  # the exchange's update id, to tell two snapshots of one moment apart
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]

    @property
    def best_bid(self) -> Decimal:
        return self.bids[0][0]

    @property
    def best_ask(self) -> Decimal:
        return self.asks[0][0]

    @property
    def mid(self) -> Decimal:
        return (self.best_bid + self.best_ask) / 2


@dataclass(frozen=True, slots=True)
class PublicTrade:
    exchange: str
    symbol: str
    trade_id: str
    traded_at: datetime
    side: Side  # the taker's side
    price: Decimal
    amount: Decimal


def book_rows(snapshot: OrderBookSnapshot) -> pd.DataFrame:
    rows = [
        (side.value, level, float(price), float(amount))
        for side, levels in ((BookSide.BID, snapshot.bids), (BookSide.ASK, snapshot.asks))
        for level, (price, amount) in enumerate(levels)
    ]
    return pd.DataFrame(rows, columns=["side", "level", "price", "amount"])


def _monotonic(frame: pd.DataFrame) -> pd.Series:
    ok = pd.Series(True, index=frame.index)
    for side, sign in ((BookSide.BID.value, -1), (BookSide.ASK.value, 1)):
        part = frame[frame["side"] == side].sort_values("level")
        step = part["price"].diff() * sign
        ok.loc[part.index] = step.fillna(1.0) > 0
    return ok


def _contiguous(frame: pd.DataFrame) -> pd.Series:
    rank = frame.groupby("side")["level"].rank(method="first") - 1
    return rank == frame["level"]


def _not_crossed(frame: pd.DataFrame) -> pd.Series:
    bids = frame[(frame["side"] == BookSide.BID.value) & (frame["level"] == 0)]["price"]
    asks = frame[(frame["side"] == BookSide.ASK.value) & (frame["level"] == 0)]["price"]
    crossed = not bids.empty and not asks.empty and bids.iloc[0] >= asks.iloc[0]
    return pd.Series(not crossed, index=frame.index)


ORDER_BOOK_SCHEMA = pa.DataFrameSchema(
    {
        "side": pa.Column(str, pa.Check.isin([s.value for s in BookSide]), nullable=False),
        "level": pa.Column(int, pa.Check.ge(0), nullable=False),
        "price": pa.Column(float, pa.Check.gt(0), nullable=False),
        "amount": pa.Column(float, pa.Check.gt(0), nullable=False),
    },
    checks=[
        pa.Check(_monotonic, name="bids strictly descending, asks strictly ascending"),
        pa.Check(_contiguous, name="levels numbered from 0 without holes"),
        pa.Check(_not_crossed, name="best bid below best ask"),
        pa.Check(
            lambda df: df["side"].nunique() == 2, name="both sides present", element_wise=False
        ),
    ],
    strict=True,
)


def validate_order_book(snapshot: OrderBookSnapshot, source: str) -> OrderBookSnapshot:
    frame = book_rows(snapshot)
    if frame.empty:
        raise MarketDataError(source, "empty order book", 0, [])
    try:
        ORDER_BOOK_SCHEMA.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        first = cases.iloc[0]
        same = cases[cases["check"] == first["check"]]
        index = sorted(set(same["index"].dropna().astype(int)))
        rows = frame.loc[[i for i in index[:3] if i in frame.index]].to_dict("records")
        raise MarketDataError(source, str(first["check"]), len(index) or len(same), rows) from None
    return snapshot


def snapshot_from_ccxt(
    exchange: str, symbol: str, book: dict[str, object], received_at: datetime, depth: int
) -> OrderBookSnapshot:
    """Binance spot books carry no timestamp (ccxt gives None): the receive time stands in."""
    timestamp = book.get("timestamp")
    taken_at = (
        received_at
        if timestamp is None
        else pd.Timestamp(int(timestamp), unit="ms", tz="UTC").to_pydatetime()  # type: ignore[call-overload]
    )
    nonce = book.get("nonce")
    return OrderBookSnapshot(
        exchange=exchange,
        symbol=symbol,
        taken_at=taken_at,
        nonce=None if nonce is None else int(nonce),  # type: ignore[call-overload]
        bids=_levels(book.get("bids"), depth),
        asks=_levels(book.get("asks"), depth),
    )


def _levels(raw: object, depth: int) -> tuple[Level, ...]:
    if not isinstance(raw, Sequence):
        raise MarketDataError("order book", "levels are not a list", 1, [raw])
    return tuple((Decimal(str(p)), Decimal(str(a))) for p, a, *_ in list(raw)[:depth])


def trades_from_ccxt(
    exchange: str, symbol: str, trades: Iterable[dict[str, object]], source: str
) -> list[PublicTrade]:
    """Parsed ccxt trades -> PublicTrade; a trade without id, time, side, price or amount is
    refused with the batch (ccxt passes through what the exchange sent)."""
    out: list[PublicTrade] = []
    bad: list[object] = []
    for t in trades:
        try:
            price, amount = Decimal(str(t["price"])), Decimal(str(t["amount"]))
            if t["id"] is None or t["timestamp"] is None or price <= 0 or amount <= 0:
                raise ValueError
            out.append(
                PublicTrade(
                    exchange=exchange,
                    symbol=symbol,
                    trade_id=str(t["id"]),
                    traded_at=pd.Timestamp(
                        int(t["timestamp"]), unit="ms", tz="UTC"
                    ).to_pydatetime(),  # type: ignore[call-overload]
                    side=Side(str(t["side"]).lower()),
                    price=price,
                    amount=amount,
                )
            )
        except (KeyError, ValueError, TypeError, ArithmeticError):
            bad.append({k: t.get(k) for k in ("id", "timestamp", "side", "price", "amount")})
    if bad:
        raise MarketDataError(
            source, "trade has id, timestamp, side and positive price and amount", len(bad), bad[:3]
        )
    return out
