"""Backtest a window of history through the live decision code on the simulated exchange."""

from __future__ import annotations

from datetime import datetime

from prefect import flow

from core.clock import SystemClock
from flows.run_logs import set_up_logs
from services.backtest.compose import new_run_id
from tasks.backtest import BacktestOutcome, attach_backtest, backtest_window
from tasks.reporting import publish_backtest


@flow(name="backtest")
def backtest(
    start: datetime | None = None,
    end: datetime | None = None,
    days: int = 30,
    symbols: list[str] | None = None,
    timeframe: str | None = None,
    model_version: str | None = None,
    run_id: str | None = None,
) -> BacktestOutcome:
    """Replay [start, end) (default: the last `days` days of stored candles) with the champion
    (or `model_version`): report under
    var/backtests/<run id>/, the run in the ledger under its own account, the report beside
    the model version in MLflow and as this run's artifact."""
    set_up_logs()
    rid = run_id or new_run_id(SystemClock().now())
    outcome = backtest_window(
        rid, tuple(symbols) if symbols else None, timeframe, (start, end, days), model_version
    )
    attach_backtest(outcome.run)
    publish_backtest(outcome.run, None if outcome.result is None else outcome.result.stats)
    return outcome
