"""A live exchange through ccxt: closed candles (paginated, resumable), order-book snapshots and
recent public trades. ccxt's errors become core.errors' exchange tree here; retrying is the
caller's job (Prefect's task retries, in tasks/), done once, not here as well."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import ccxt
import pandas as pd

from core.candles.clean import order_candles
from core.candles.schema import CANDLE_COLUMNS, validate_candles
from core.candles.timeframe import timeframe_seconds
from core.clock import Clock
from core.errors import ConfigurationError
from core.market.order_book import (
    OrderBookSnapshot,
    PublicTrade,
    snapshot_from_ccxt,
    trades_from_ccxt,
    validate_order_book,
)
from infra.exchange_errors import ccxt_errors


class CcxtMarketSource:
    def __init__(
        self,
        exchange: ccxt.Exchange,
        clock: Clock,
        page_limit: int = 1000,
        max_pages: int = 10_000,
    ) -> None:
        self.client = exchange
        self.clock = clock
        self.page_limit = page_limit
        self.max_pages = max_pages
        self.exchange = str(exchange.id)  # the ledger's key for this venue's data

    def describe(self, symbol: str, timeframe: str) -> str:
        return f"ccxt:{self.exchange}"

    def fetch(self, symbol: str, timeframe: str, since: datetime) -> Iterator[pd.DataFrame]:
        """Every closed candle from `since` up to now, one validated page at a time, so the
        caller can store each before asking for the next: a failure part-way loses nothing and
        a retry resumes after the last stored candle. The still-open candle is never returned."""
        step_ms = timeframe_seconds(timeframe) * 1000
        now_ms = int(self.clock.now().timestamp() * 1000)
        cursor = int(since.timestamp() * 1000)
        operation = f"{self.exchange} fetch_ohlcv {symbol} {timeframe}"
        for _ in range(self.max_pages):
            with ccxt_errors(f"{operation} since={cursor}"):
                page = self._page(symbol, timeframe, cursor)
            page = [r for r in page if r[0] >= cursor]
            if not page:
                return
            closed = [r[:6] for r in page if int(r[0]) + step_ms <= now_ms]
            if closed:
                yield _validated(closed, operation)
            cursor = int(page[-1][0]) + step_ms
            if cursor + step_ms > now_ms:  # the next candle is still open
                return

    def order_book(self, symbol: str, depth: int) -> OrderBookSnapshot:
        """The top `depth` levels now, validated (sorted, positive, not crossed)."""
        operation = f"{self.exchange} fetch_order_book {symbol}"
        with ccxt_errors(operation):
            raw = self.client.fetch_order_book(symbol, depth)
        snapshot = snapshot_from_ccxt(self.exchange, symbol, raw, self.clock.now(), depth)
        return validate_order_book(snapshot, operation)

    def trades(self, symbol: str, since: datetime | None, limit: int = 1000) -> list[PublicTrade]:
        """Recent public trades (after `since` when given), oldest first, validated."""
        operation = f"{self.exchange} fetch_trades {symbol}"
        since_ms = None if since is None else int(since.timestamp() * 1000) + 1
        with ccxt_errors(operation):
            raw = self.client.fetch_trades(symbol, since=since_ms, limit=limit)
        return trades_from_ccxt(self.exchange, symbol, raw, operation)

    def _page(self, symbol: str, timeframe: str, since_ms: int) -> list[list[float]]:
        return self.client.fetch_ohlcv(symbol, timeframe, since=since_ms, limit=self.page_limit)


def _validated(rows: list[list[float]], operation: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(CANDLE_COLUMNS))
    frame["open_time"] = pd.to_datetime(frame["open_time"].astype("int64"), unit="ms", utc=True)
    frame["open_time"] = frame["open_time"].astype("datetime64[ns, UTC]")
    for col in CANDLE_COLUMNS[1:]:
        frame[col] = frame[col].astype("float64")
    ordered, _ = order_candles(frame, operation)
    return validate_candles(ordered, operation)


def make_exchange(exchange_id: str, sandbox: bool = False) -> ccxt.Exchange:
    """A ccxt client that paces itself; `sandbox` points it at the exchange's testnet (ccxt's
    set_sandbox_mode), refused for an exchange that has none."""
    cls = getattr(ccxt, exchange_id, None)
    if cls is None or not isinstance(cls, type):
        raise ConfigurationError(f"unknown ccxt exchange {exchange_id!r} (TRADEFLOW_EXCHANGE)")
    exchange = cls({"enableRateLimit": True})
    if sandbox:
        try:
            exchange.set_sandbox_mode(True)
        except ccxt.NotSupported as exc:
            raise ConfigurationError(
                f"{exchange_id} has no sandbox (TRADEFLOW_EXCHANGE_SANDBOX=true): {exc}"
            ) from exc
    return exchange
