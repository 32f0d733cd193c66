"""Order-book snapshots and public trades in the ledger; each call is one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import groupby

from sqlalchemy import bindparam, func, select

from core.market.order_book import BookSide, OrderBookSnapshot, PublicTrade
from core.types import datetime_to_ms, ms_to_datetime
from infra.ledger.dialect import insert_for
from infra.ledger.models import OrderBookLevelRow, PublicTradeRow
from infra.ledger.sessions import Sessions

# Read at every live decision: built once (infra.ledger.orders says why).
_ORDER_BOOKS = (
    select(OrderBookLevelRow)
    .where(
        OrderBookLevelRow.exchange == bindparam("exchange"),
        OrderBookLevelRow.symbol == bindparam("symbol"),
        OrderBookLevelRow.taken_at_ms >= bindparam("since"),
        OrderBookLevelRow.taken_at_ms <= bindparam("until"),
    )
    .order_by(OrderBookLevelRow.taken_at_ms, OrderBookLevelRow.side, OrderBookLevelRow.level)
)


class Microstructure:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def record_order_book(self, snapshot: OrderBookSnapshot) -> bool:
        """Store every level of a validated snapshot; False when that moment is stored already."""
        taken_ms = datetime_to_ms(snapshot.taken_at)
        rows = [
            {
                "exchange": snapshot.exchange,
                "symbol": snapshot.symbol,
                "taken_at_ms": taken_ms,
                "nonce": snapshot.nonce,
                "side": side.value,
                "level": level,
                "price": price,
                "amount": amount,
            }
            for side, levels in ((BookSide.BID, snapshot.bids), (BookSide.ASK, snapshot.asks))
            for level, (price, amount) in enumerate(levels)
        ]
        with self._sessions.write() as s:
            stmt = (
                insert_for(s)(OrderBookLevelRow)
                .values(rows)
                .on_conflict_do_nothing(
                    index_elements=["exchange", "symbol", "taken_at_ms", "side", "level"]
                )
                .returning(OrderBookLevelRow.id)
            )
            return len(s.execute(stmt).all()) > 0

    def order_books(
        self, exchange: str, symbol: str, since: datetime, until: datetime
    ) -> list[OrderBookSnapshot]:
        params = {
            "exchange": exchange,
            "symbol": symbol,
            "since": datetime_to_ms(since),
            "until": datetime_to_ms(until),
        }
        rows = self._sessions.rows(_ORDER_BOOKS, params)
        books = []
        for taken_ms, group in groupby(rows, key=lambda r: r.taken_at_ms):
            levels = list(group)
            books.append(
                OrderBookSnapshot(
                    exchange=exchange,
                    symbol=symbol,
                    taken_at=ms_to_datetime(taken_ms),
                    nonce=levels[0].nonce,
                    bids=tuple((r.price, r.amount) for r in levels if r.side == BookSide.BID),
                    asks=tuple((r.price, r.amount) for r in levels if r.side == BookSide.ASK),
                )
            )
        return books

    def record_trades(self, trades: Sequence[PublicTrade]) -> int:
        """Store trades not seen before (unique exchange, symbol, trade id); return how many."""
        if not trades:
            return 0
        rows = [
            {
                "exchange": t.exchange,
                "symbol": t.symbol,
                "trade_id": t.trade_id,
                "traded_at_ms": datetime_to_ms(t.traded_at),
                "side": t.side.value,
                "price": t.price,
                "amount": t.amount,
            }
            for t in trades
        ]
        with self._sessions.write() as s:
            stmt = (
                insert_for(s)(PublicTradeRow)
                .values(rows)
                .on_conflict_do_nothing(index_elements=["exchange", "symbol", "trade_id"])
                .returning(PublicTradeRow.id)
            )
            return len(s.execute(stmt).all())

    def last_trade_time(self, exchange: str, symbol: str) -> datetime | None:
        with self._sessions.read() as s:
            ms = s.scalar(
                select(func.max(PublicTradeRow.traded_at_ms)).where(
                    PublicTradeRow.exchange == exchange, PublicTradeRow.symbol == symbol
                )
            )
        return None if ms is None else ms_to_datetime(ms)

    def count_trades(self, exchange: str, symbol: str) -> int:
        with self._sessions.read() as s:
            return (
                s.scalar(
                    select(func.count())
                    .select_from(PublicTradeRow)
                    .where(PublicTradeRow.exchange == exchange, PublicTradeRow.symbol == symbol)
                )
                or 0
            )
