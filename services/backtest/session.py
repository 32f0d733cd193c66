"""A backtest from request to record: candles of the window into a scratch ledger, the replay on
the simulated exchange, the results a person reads, and the run stored in the ledger under its
own account (never mixed with paper or live rows)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd

from core.agents.panel import Panel
from core.backtest.stats import BacktestStats, compute_stats
from core.candles.timeframe import timeframe_delta
from core.ports import Ledger, Model, Notifier, ScratchLedger, SimulatedExchange
from core.records import BacktestRun
from services.backtest.engine import BacktestWindow, CandleReader, load_window, window_candles
from services.collector import rare_collections
from services.decide.config import DecisionConfig
from services.decide.loop import DecisionRunReport
from services.decide.replay import replay


@dataclass(frozen=True)
class BacktestResult:
    run: BacktestRun
    decisions: DecisionRunReport
    stats: BacktestStats
    closes: Mapping[str, pd.Series]  # per symbol, indexed by open time: the window's closes
    seconds: Mapping[str, float] = field(default_factory=dict)  # per stage

    @property
    def symbol_candles(self) -> int:
        return sum(len(c) for c in self.closes.values())


@dataclass(frozen=True)
class BacktestParts:
    """What one run is made of; `scratch` and `exchange` are fresh for each run."""

    scratch: ScratchLedger
    exchange: SimulatedExchange
    model: Model
    panel: Panel
    cfg: DecisionConfig
    alerts: Notifier
    starting_cash: Decimal


def run_backtest(
    read: CandleReader,
    parts: BacktestParts,
    window: BacktestWindow,
    run_id: str,
    now: datetime,
    params: Mapping[str, str] | None = None,
) -> BacktestResult:
    """Replay the window; nothing is written anywhere but `parts.scratch`."""
    cfg, clock = parts.cfg, _Stopwatch()
    frames = load_window(read, parts.scratch, cfg, window)
    closes = {s: _closes(f, window) for s, f in frames.items()}
    candles = window_candles(frames, window)
    del frames  # the scratch ledger holds them: no second copy through the run
    step = timeframe_delta(cfg.timeframe)
    parts.scratch.accounts.ensure(cfg.account, parts.starting_cash, window.start - step)
    clock.lap("load")
    with rare_collections():
        report = replay(
            parts.scratch, parts.exchange, parts.model, parts.panel, cfg, candles, parts.alerts
        )
    clock.lap("decide")
    fills = parts.scratch.fills.history(cfg.account)
    stats = compute_stats(parts.starting_cash, fills, closes, cfg.timeframe)
    clock.lap("stats")
    run = BacktestRun(
        run_id=run_id,
        account=cfg.account,
        created_at=now,
        symbols=tuple(cfg.symbols),
        timeframe=cfg.timeframe,
        start=window.start,
        end=window.end,
        model_name=parts.model.name,
        model_version=parts.model.version,
        params=dict(params or {}),
        summary=summary_of(stats, report),
    )
    return BacktestResult(run, report, stats, closes, clock.laps)


def store_backtest(
    ledger: Ledger, scratch: ScratchLedger, result: BacktestResult, report_path: str | None
) -> BacktestRun:
    """The run, its decisions, orders, fills and positions: one transaction."""
    records = scratch.records(result.run.account)
    run = replace(
        result.run, report_path=report_path, starting_cash=records.starting_cash, cash=records.cash
    )
    ledger.backtests.save(run, records)
    return run


def backtest_and_store(
    ledger: Ledger,
    read: CandleReader,
    parts: BacktestParts,
    window: BacktestWindow,
    run_id: str,
    now: datetime,
    params: Mapping[str, str],
    write_report: Callable[[BacktestResult], Path],
) -> tuple[BacktestRun, BacktestResult]:
    """Run, report, store. A failure at any step removes what the run had written to the
    ledger (decisions streamed in chunks), so a run is stored whole or not at all."""
    try:
        result = run_backtest(read, parts, window, run_id, now, params)
        path = write_report(result)
        return store_backtest(ledger, parts.scratch, result, str(path)), result
    except BaseException:
        parts.scratch.close()  # nothing may still be writing while the run is discarded
        ledger.backtests.discard(parts.cfg.account)
        raise
    finally:
        parts.scratch.close()


def summary_of(stats: BacktestStats, report: DecisionRunReport) -> dict[str, float | str | None]:
    r = stats.run
    return {
        "final_equity": str(r.final_equity),
        "total_return": r.total_return,
        "buy_and_hold_return": r.buy_and_hold_return,
        "cagr": r.cagr,
        "max_drawdown": r.max_drawdown,
        "sharpe": r.sharpe,
        "sortino": r.sortino,
        "calmar": r.calmar,
        "exposure": r.exposure,
        "trades": float(r.trades),
        "win_rate": r.win_rate,
        "fees": str(r.fees),
        "orders": float(report.orders),
        "fills": float(report.fills),
        "decisions": float(sum(report.decided.values())),
    }


def _closes(frame: pd.DataFrame, window: BacktestWindow) -> pd.Series:
    inside = frame[(frame["open_time"] >= window.start) & (frame["open_time"] < window.end)]
    return pd.Series(inside["close"].to_numpy(), index=pd.DatetimeIndex(inside["open_time"]))


class _Stopwatch:
    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self._now = now
        self._last = now()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        t = self._now()
        self.laps[name] = t - self._last
        self._last = t
