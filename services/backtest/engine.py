"""A backtest's window: its bounds, its candles copied into the scratch ledger (the warm-up
before it included, nothing from its end on) and how many candle times the replay
(services.decide.replay, the live decision code) decides over it. The scratch ledger and the
simulated exchange live in memory during the run (one run is hundreds of thousands of
decisions: a transaction each would be most of the time); services.backtest.session writes
what it recorded to the SQL ledger, under the run's own account."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from core.candles.timeframe import timeframe_delta
from core.errors import FatalError
from core.ports import TradingLedger
from services.decide.batch import FEATURE_WINDOW
from services.decide.config import DecisionConfig


class EmptyWindow(FatalError, LookupError):
    pass


@dataclass(frozen=True, slots=True)
class BacktestWindow:
    start: datetime  # open time of the first candle decided
    end: datetime  # candles opening before this are decided

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise EmptyWindow(f"the window {self.start:%F %T} .. {self.end:%F %T} is empty")


def recent_window(ledger: TradingLedger, cfg: DecisionConfig, days: int) -> BacktestWindow:
    """The last `days` days up to the newest candle every symbol has (a scheduled backtest of
    what the champion would have done lately)."""
    newest = [ledger.candles.last_time(cfg.exchange, s, cfg.timeframe) for s in cfg.symbols]
    if any(t is None for t in newest):
        raise EmptyWindow(f"no {cfg.timeframe} candles stored for some of {list(cfg.symbols)}")
    end = min(t for t in newest if t is not None) + timeframe_delta(cfg.timeframe)
    return BacktestWindow(end - timedelta(days=days), end)


# All the candles of one symbol (open_time and OHLCV columns, oldest first).
CandleReader = Callable[[str], pd.DataFrame]


def load_window(
    read: CandleReader, scratch: TradingLedger, cfg: DecisionConfig, window: BacktestWindow
) -> dict[str, pd.DataFrame]:
    """Copy each symbol's candles of the window, and the warm-up before it, into `scratch`;
    nothing from `window.end` on (the run cannot see the future it is tested on)."""
    out = {}
    for symbol in cfg.symbols:
        frame = read(symbol)
        opens = frame["open_time"]
        inside = frame[(opens >= window.start) & (opens < window.end)]
        if inside.empty:
            raise EmptyWindow(
                f"{symbol} {cfg.timeframe}: no candles between {window.start:%F %T} and "
                f"{window.end:%F %T}"
            )
        first = max(inside.index[0] - FEATURE_WINDOW, 0)
        chosen = frame.loc[first : inside.index[-1]].reset_index(drop=True)
        scratch.candles.upsert(cfg.exchange, symbol, cfg.timeframe, chosen)
        out[symbol] = chosen
    return out


def window_candles(frames: Mapping[str, pd.DataFrame], window: BacktestWindow) -> int:
    """How many candle times of the window the longest symbol has: what the replay decides
    (services.decide.replay.replay over the scratch ledger `load_window` filled)."""
    return max(int((f["open_time"] >= window.start).sum()) for f in frames.values())
