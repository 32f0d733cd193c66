"""Ingest: read candles from the configured source, apply the gap policy, store them; and, when
live, an order-book snapshot and the public trades since the last stored one."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import pandas as pd

from core.candles.gaps import GapPolicy, apply_gap_policy
from core.candles.timeframe import timeframe_delta
from core.ports import CandleSource, Ledger, MicrostructureSource


@dataclass(frozen=True, slots=True)
class IngestReport:
    symbol: str
    timeframe: str
    source: str
    received: int
    inserted: int
    stored: int
    first: datetime | None
    last: datetime | None
    gaps: int = 0
    missing: int = 0
    filled: int = 0

    def plus(self, batch: IngestReport) -> IngestReport:
        """This report with one more batch of the same symbol and timeframe added."""
        return replace(
            self,
            received=self.received + batch.received,
            inserted=self.inserted + batch.inserted,
            first=self.first or batch.first,
            last=batch.last or self.last,
            gaps=self.gaps + batch.gaps,
            missing=self.missing + batch.missing,
            filled=self.filled + batch.filled,
        )


@dataclass(frozen=True, slots=True)
class MicrostructureReport:
    symbol: str
    book_levels: int
    book_time: datetime | None
    trades_received: int
    trades_new: int


def ingest_microstructure(
    ledger: Ledger, source: MicrostructureSource, symbol: str, depth: int
) -> MicrostructureReport:
    """One order-book snapshot and the public trades since the last stored one.

    Each is validated whole before anything is stored; a snapshot already stored for the same
    moment, or a trade already stored, is skipped."""
    store = ledger.microstructure
    book = source.order_book(symbol, depth)
    trades = source.trades(symbol, store.last_trade_time(source.exchange, symbol))
    store.record_order_book(book)
    new = store.record_trades(trades)
    return MicrostructureReport(
        symbol=symbol,
        book_levels=len(book.bids) + len(book.asks),
        book_time=book.taken_at,
        trades_received=len(trades),
        trades_new=new,
    )


def ingest_candles(
    ledger: Ledger,
    source: CandleSource,
    symbol: str,
    timeframe: str,
    default_since: datetime,
    gap_policy: GapPolicy = GapPolicy.KEEP,
) -> IngestReport:
    """The candles after the newest stored one (from `default_since` when none is), batch by
    batch: each batch is validated and stored whole before the next is fetched, so a failure
    part-way keeps what came before it and a rerun resumes after it."""
    label = source.describe(symbol, timeframe)
    last = ledger.candles.last_time(source.exchange, symbol, timeframe)
    since = default_since if last is None else last + timeframe_delta(timeframe)
    total = IngestReport(symbol, timeframe, label, 0, 0, 0, None, None)
    for frame in source.fetch(symbol, timeframe, since):
        total = total.plus(
            _store(ledger, source.exchange, symbol, timeframe, frame, label, gap_policy)
        )
    stored = ledger.candles.count(source.exchange, symbol, timeframe)
    return replace(total, stored=stored)


def _store(
    ledger: Ledger,
    exchange: str,
    symbol: str,
    timeframe: str,
    frame: pd.DataFrame,
    source: str,
    policy: GapPolicy,
) -> IngestReport:
    gaps = []
    filled = 0
    inserted = 0
    if len(frame):
        # A batch that starts after the stored history may leave a hole before its first candle.
        last = ledger.candles.last_time(exchange, symbol, timeframe)
        first = frame["open_time"].iloc[0].to_pydatetime()
        after = last if last is not None and last < first else None
        previous_close = None
        if after is not None:
            close = ledger.candles.last_close(exchange, symbol, timeframe, until=after)
            previous_close = None if close is None else float(close)
        prepared, gaps = apply_gap_policy(frame, timeframe, policy, source, after, previous_close)
        filled = int(prepared["is_filled"].sum())
        inserted = ledger.candles.upsert(
            exchange, symbol, timeframe, prepared, gaps, policy.value, source
        )
    return IngestReport(
        symbol=symbol,
        timeframe=timeframe,
        source=source,
        received=len(frame),
        inserted=inserted,
        stored=0,
        first=None if frame.empty else frame["open_time"].iloc[0].to_pydatetime(),
        last=None if frame.empty else frame["open_time"].iloc[-1].to_pydatetime(),
        gaps=len(gaps),
        missing=sum(g.missing for g in gaps),
        filled=filled,
    )
