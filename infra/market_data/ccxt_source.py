"""A live exchange through ccxt: closed candles (paginated, resumable), order-book snapshots and
recent public trades. Every call retries ccxt's NetworkError family with backoff and jitter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import ccxt
import pandas as pd
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from core.candles.clean import order_candles
from core.candles.schema import CANDLE_COLUMNS, validate_candles
from core.candles.timeframe import timeframe_seconds
from core.clock import Clock
from core.market.order_book import (
    OrderBookSnapshot,
    PublicTrade,
    snapshot_from_ccxt,
    trades_from_ccxt,
    validate_order_book,
)
from infra.exchange_errors import ccxt_errors

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Per-page retries on ccxt's NetworkError family: RequestTimeout, DDoSProtection,
    RateLimitExceeded, ExchangeNotAvailable. Anything else fails at once."""

    attempts: int = 5
    initial_s: float = 1.0
    max_s: float = 30.0
    jitter_s: float = 1.0


class CcxtMarketSource:
    def __init__(
        self,
        exchange: ccxt.Exchange,
        clock: Clock,
        page_limit: int = 1000,
        max_pages: int = 10_000,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.exchange = exchange
        self.clock = clock
        self.page_limit = page_limit
        self.max_pages = max_pages
        self.retry = retry or RetryPolicy()

    @property
    def name(self) -> str:
        return str(self.exchange.id)

    def fetch(self, symbol: str, timeframe: str, since: datetime) -> pd.DataFrame:
        """Every closed candle from `since` up to now, validated; empty frame if none yet."""
        step_ms = timeframe_seconds(timeframe) * 1000
        now_ms = int(self.clock.now().timestamp() * 1000)
        cursor = int(since.timestamp() * 1000)
        rows: list[list[float]] = []
        operation = f"{self.name} fetch_ohlcv {symbol} {timeframe}"
        for _ in range(self.max_pages):
            with ccxt_errors(f"{operation} since={cursor}"):
                page = self._page(symbol, timeframe, cursor)
            page = [r for r in page if r[0] >= cursor]
            if not page:
                break
            rows.extend(page)
            cursor = int(page[-1][0]) + step_ms
            if cursor + step_ms > now_ms:  # the next candle is still open
                break
        # The still-open candle (open + one step beyond now) is never returned.
        closed = [r[:6] for r in rows if int(r[0]) + step_ms <= now_ms]
        frame = pd.DataFrame(closed, columns=list(CANDLE_COLUMNS))
        if frame.empty:
            return frame
        frame["open_time"] = pd.to_datetime(frame["open_time"].astype("int64"), unit="ms", utc=True)
        frame["open_time"] = frame["open_time"].astype("datetime64[ns, UTC]")
        for col in CANDLE_COLUMNS[1:]:
            frame[col] = frame[col].astype("float64")
        ordered, _ = order_candles(frame, operation)
        return validate_candles(ordered, operation)

    def order_book(self, symbol: str, depth: int) -> OrderBookSnapshot:
        """The top `depth` levels now, validated (sorted, positive, not crossed)."""
        operation = f"{self.name} fetch_order_book {symbol}"
        with ccxt_errors(operation):
            raw = self._retrying(lambda: self.exchange.fetch_order_book(symbol, depth))
        snapshot = snapshot_from_ccxt(self.name, symbol, raw, self.clock.now(), depth)
        return validate_order_book(snapshot, operation)

    def trades(self, symbol: str, since: datetime | None, limit: int = 1000) -> list[PublicTrade]:
        """Recent public trades (after `since` when given), oldest first, validated."""
        operation = f"{self.name} fetch_trades {symbol}"
        since_ms = None if since is None else int(since.timestamp() * 1000) + 1
        with ccxt_errors(operation):
            raw = self._retrying(
                lambda: self.exchange.fetch_trades(symbol, since=since_ms, limit=limit)
            )
        return trades_from_ccxt(self.name, symbol, raw, operation)

    def _page(self, symbol: str, timeframe: str, since_ms: int) -> list[list[float]]:
        return self._retrying(
            lambda: self.exchange.fetch_ohlcv(
                symbol, timeframe, since=since_ms, limit=self.page_limit
            )
        )

    def _retrying(self, call: Callable[[], T]) -> T:
        for attempt in Retrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=wait_exponential_jitter(
                self.retry.initial_s, self.retry.max_s, jitter=self.retry.jitter_s
            ),
            retry=retry_if_exception_type(ccxt.NetworkError),
            reraise=True,
        ):
            with attempt:
                return call()
        raise AssertionError("unreachable: tenacity re-raises the last error")


def make_exchange(exchange_id: str) -> ccxt.Exchange:
    try:
        cls = getattr(ccxt, exchange_id)
    except AttributeError as exc:
        raise ValueError(f"unknown ccxt exchange {exchange_id!r}") from exc
    return cls({"enableRateLimit": True})
