"""Ingest: read candles from the configured source, apply the gap policy, store them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from core.candles.gaps import GapPolicy, apply_gap_policy
from core.candles.timeframe import timeframe_delta
from infra.ledger.repository import Ledger
from infra.market_data.ccxt_source import CcxtMarketSource
from infra.market_data.files import candle_file_for, read_candle_file


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


@dataclass(frozen=True, slots=True)
class MicrostructureReport:
    symbol: str
    book_levels: int
    book_time: datetime | None
    trades_received: int
    trades_new: int


def ingest_microstructure(
    ledger: Ledger, source: CcxtMarketSource, symbol: str, depth: int
) -> MicrostructureReport:
    """One order-book snapshot and the public trades since the last stored one.

    Each is validated whole before anything is stored; a snapshot already stored for the same
    moment, or a trade already stored, is skipped."""
    store = ledger.microstructure
    book = source.order_book(symbol, depth)
    trades = source.trades(symbol, store.last_trade_time(source.name, symbol))
    store.record_order_book(book)
    new = store.record_trades(trades)
    return MicrostructureReport(
        symbol=symbol,
        book_levels=len(book.bids) + len(book.asks),
        book_time=book.taken_at,
        trades_received=len(trades),
        trades_new=new,
    )


def ingest_file(
    ledger: Ledger,
    exchange: str,
    data_dir: Path,
    symbol: str,
    timeframe: str,
    gap_policy: GapPolicy = GapPolicy.KEEP,
) -> IngestReport:
    path = candle_file_for(data_dir, symbol, timeframe)
    frame = read_candle_file(path)  # validates whole: a bad file stores nothing
    return _store(ledger, exchange, symbol, timeframe, frame, str(path), gap_policy)


def ingest_exchange(
    ledger: Ledger,
    source: CcxtMarketSource,
    symbol: str,
    timeframe: str,
    default_since: datetime,
    gap_policy: GapPolicy = GapPolicy.KEEP,
) -> IngestReport:
    last = ledger.last_candle_time(source.name, symbol, timeframe)
    since = default_since if last is None else last + timeframe_delta(timeframe)
    frame = source.fetch(symbol, timeframe, since)
    return _store(ledger, source.name, symbol, timeframe, frame, f"ccxt:{source.name}", gap_policy)


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
        last = ledger.last_candle_time(exchange, symbol, timeframe)
        first = frame["open_time"].iloc[0].to_pydatetime()
        after = last if last is not None and last < first else None
        previous_close = None
        if after is not None:
            previous_close = float(
                ledger.load_candles(exchange, symbol, timeframe, until=after, limit=1)[
                    "close"
                ].iloc[-1]
            )
        prepared, gaps = apply_gap_policy(frame, timeframe, policy, source, after, previous_close)
        filled = int(prepared["is_filled"].sum())
        inserted = ledger.upsert_candles(
            exchange, symbol, timeframe, prepared, gaps, policy.value, source
        )
    return IngestReport(
        symbol=symbol,
        timeframe=timeframe,
        source=source,
        received=len(frame),
        inserted=inserted,
        stored=ledger.count_candles(exchange, symbol, timeframe),
        first=None if frame.empty else frame["open_time"].iloc[0].to_pydatetime(),
        last=None if frame.empty else frame["open_time"].iloc[-1].to_pydatetime(),
        gaps=len(gaps),
        missing=sum(g.missing for g in gaps),
        filled=filled,
    )
