"""`tradeflow backtest`: the backtest flow under our Prefect server, a progress bar, then the
per-pair results, the summary and where the run is kept."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console

from cli.backtest_view import BacktestProgress, print_backtest, print_run
from infra.settings import Settings


def run_backtest_flow(
    console: Console,
    settings: Settings,
    window: tuple[datetime, datetime],
    symbols: tuple[str, ...] | None,
    timeframe: str | None,
    model_version: str | None,
) -> None:
    from cli.flow_session import flow_session
    from core.candles.timeframe import timeframe_delta
    from flows.backtest import backtest

    start, end = window
    step = timeframe_delta(timeframe or settings.timeframe)
    candles = max(int((end - start) / step), 1)
    console.print(
        f"[bold]tradeflow backtest[/] {','.join(symbols or settings.symbols)} "
        f"{timeframe or settings.timeframe} {start:%F %H:%M} .. {end:%F %H:%M} UTC",
        highlight=False,
    )
    with flow_session(console, settings.var_dir, "backtest", BacktestProgress(console, candles)):
        outcome = backtest(
            start=start,
            end=end,
            symbols=list(symbols) if symbols else None,
            timeframe=timeframe,
            model_version=model_version,
        )
    result = outcome.result
    if result is None:
        console.print(f"run {outcome.run.run_id} was stored by an earlier attempt")
        return
    print_backtest(console, result.stats, f"backtest {outcome.run.run_id}")
    print_run(console, outcome.run, result.seconds, result.symbol_candles)
