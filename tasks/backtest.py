"""Backtest tasks: run a window (report written, run stored), then tell MLflow and Prefect.

The run id is the flow's: a retried task finds its run stored and returns it instead of
storing a second one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from core.clock import SystemClock
from core.records import BacktestRun
from services import bootstrap
from services.backtest import compose
from services.backtest.engine import BacktestWindow, recent_window
from services.backtest.session import BacktestResult, backtest_and_store
from tasks.retry import only_retryable


@dataclass(frozen=True)
class BacktestOutcome:
    run: BacktestRun
    result: BacktestResult | None  # None when an earlier try had stored the run already


@task(name="backtest-window", retries=1, retry_delay_seconds=2,
      retry_condition_fn=only_retryable, cache_policy=NO_CACHE)  # fmt: skip
def backtest_window(
    run_id: str,
    symbols: tuple[str, ...] | None,
    timeframe: str | None,
    window: tuple[datetime | None, datetime | None, int],  # start, end, else the last N days
    model_version: str | None,
) -> BacktestOutcome:
    base = bootstrap.get_settings()
    ledger = bootstrap.ledger(base)
    stored = ledger.backtests.get(run_id)
    if stored is not None:
        return BacktestOutcome(stored, None)
    settings = compose.backtest_settings(base, symbols, timeframe, run_id)
    model = compose.model(settings, model_version)
    parts = compose.parts(settings, model, ledger.backtests.decision_sink(settings.account))
    params = {
        "symbols": ",".join(settings.symbols),
        "timeframe": settings.timeframe,
        "model_version": model_version or "champion",
        "fee_rate": str(settings.fee_rate),
        "slippage_bps": str(settings.slippage_bps),
        "order_notional": str(settings.order_notional),
    }
    start, end, days = window
    chosen = BacktestWindow(start, end) if start and end else recent_window(ledger, parts.cfg, days)
    run, result = backtest_and_store(
        ledger,
        compose.reader(settings, ledger),
        parts,
        chosen,
        run_id,
        SystemClock().now(),
        params,
        lambda r: compose.write_report(settings, r),
    )
    return BacktestOutcome(run, result)


@task(name="attach-backtest", retries=2, retry_delay_seconds=2,
      retry_condition_fn=only_retryable, cache_policy=NO_CACHE)  # fmt: skip
def attach_backtest(run: BacktestRun) -> str | None:
    """The report beside the tested model version in MLflow; returns the MLflow run id."""
    if run.report_path is None:
        return None
    return compose.attach_report(bootstrap.get_settings(), run)
