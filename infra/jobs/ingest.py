"""Ingest: read candles from the configured source and upsert them into the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from core.candles.timeframe import timeframe_delta
from infra.ledger.repository import Ledger
from infra.market_data.ccxt_source import CcxtCandleSource
from infra.market_data.files import candle_file_for, read_candle_file


@dataclass(frozen=True, slots=True)
class IngestReport:
    symbol: str
    source: str
    received: int
    inserted: int
    stored: int
    first: datetime | None
    last: datetime | None


def ingest_file(
    ledger: Ledger, exchange: str, data_dir: Path, symbol: str, timeframe: str
) -> IngestReport:
    path = candle_file_for(data_dir, symbol, timeframe)
    frame = read_candle_file(path)  # validates whole: a bad file stores nothing
    return _store(ledger, exchange, symbol, timeframe, frame, str(path))


def ingest_exchange(
    ledger: Ledger, source: CcxtCandleSource, symbol: str, timeframe: str, default_since: datetime
) -> IngestReport:
    last = ledger.last_candle_time(source.name, symbol, timeframe)
    since = default_since if last is None else last + timeframe_delta(timeframe)
    frame = source.fetch(symbol, timeframe, since)
    return _store(ledger, source.name, symbol, timeframe, frame, f"ccxt:{source.name}")


def _store(
    ledger: Ledger, exchange: str, symbol: str, timeframe: str, frame: pd.DataFrame, source: str
) -> IngestReport:
    inserted = ledger.upsert_candles(exchange, symbol, timeframe, frame) if len(frame) else 0
    return IngestReport(
        symbol=symbol,
        source=source,
        received=len(frame),
        inserted=inserted,
        stored=ledger.count_candles(exchange, symbol, timeframe),
        first=None if frame.empty else frame["open_time"].iloc[0].to_pydatetime(),
        last=None if frame.empty else frame["open_time"].iloc[-1].to_pydatetime(),
    )
