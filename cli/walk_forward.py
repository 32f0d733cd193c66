"""`tradeflow walk-forward`: retrain every period, test the period after, on Dask workers;
then the per-fold table, the chained return and where the report is.

Registered in cli/main.py as `app.command("walk-forward")(walk_forward_command)`.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.options import load_settings
from cli.options import parse_utc as parse_dates
from infra.settings import Settings

if TYPE_CHECKING:  # imported once the offline environment is set
    from tasks.walk_forward import WalkForwardReport

console = Console()
DASK_ADDRESS_ENV = "TRADEFLOW_DASK_ADDRESS"
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_period(text: str, option: str) -> timedelta:
    """'30d', '12h', '90m', '2w' -> a timedelta (m is minutes, as in timeframes)."""
    found = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text)
    if found is None or int(found.group(1)) == 0:
        console.print(f"[red]{option} {text!r} is not a period: use e.g. 30d, 12h, 90m or 2w")
        raise typer.Exit(2)
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


def parse_utc(text: str, option: str) -> datetime:
    return parse_dates(text, option, console)


def walk_forward_command(
    start: Annotated[str, typer.Option("--from", help="first candle tested, UTC: 2024-03-01")],
    end: Annotated[str, typer.Option("--to", help="candles opening before this are tested")],
    retrain_every: Annotated[
        str, typer.Option("--retrain-every", help="fold length: retrain this often (30d, 12h)")
    ] = "30d",
    train_window: Annotated[
        str | None,
        typer.Option("--train-window", help="train on this much before each fold (default: all)"),
    ] = None,
    symbols: Annotated[
        str | None, typer.Option(help="comma-separated, e.g. BTC/USDT,ETH/USDT (default: settings)")
    ] = None,
    timeframe: Annotated[str | None, typer.Option(help="e.g. 5m (default: settings)")] = None,
    workers: Annotated[int, typer.Option(min=1, help="local Dask worker processes")] = 2,
    dask_address: Annotated[
        str | None,
        typer.Option(envvar=DASK_ADDRESS_ENV, help="a running Dask scheduler, e.g. tcp://h:8786"),
    ] = None,
) -> None:
    """Walk-forward: per fold of --retrain-every, train the ensemble on the candles before it
    and backtest the fold with that model (folds in parallel on Dask); the folds' returns
    chained, an HTML report under var/walk-forward/ and a Prefect artifact."""
    settings = _settings()
    window = (parse_utc(start, "--from"), parse_utc(end, "--to"))
    every = parse_period(retrain_every, "--retrain-every")
    trained_on = parse_period(train_window, "--train-window") if train_window else None
    chosen = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
    report = run_walk_forward_flow(
        settings, window, (every, trained_on), (chosen, timeframe), (workers, dask_address)
    )
    print_walk_forward(console, report)


def _settings() -> Settings:
    return load_settings(console)


def run_walk_forward_flow(
    settings: Settings,
    window: tuple[datetime, datetime],
    periods: tuple[timedelta, timedelta | None],
    market: tuple[list[str] | None, str | None],
    cluster: tuple[int, str | None],
) -> WalkForwardReport:
    """The flow under our Prefect server (whose URL the Dask workers inherit); one line and
    exit code 1 on a refusal."""
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("DASK_DISTRIBUTED__LOGGING__DISTRIBUTED", "warning")
    from cli.flow_session import flow_session
    from flows.walk_forward import dask_runner, walk_forward

    symbols, timeframe = market
    workers, address = cluster
    where = address or f"{workers} local Dask workers"
    console.print(
        f"[bold]tradeflow walk-forward[/] {','.join(symbols or settings.symbols)} "
        f"{timeframe or settings.timeframe} {window[0]:%F %H:%M} .. {window[1]:%F %H:%M} UTC, "
        f"retrain every {periods[0]}, on {where}",
        highlight=False,
    )
    flow = walk_forward.with_options(task_runner=dask_runner(workers, address))
    status = console.status("training and testing the folds")
    with flow_session(console, settings.var_dir, "walk-forward", status):
        report = flow(window[0], window[1], periods[0], periods[1], symbols, timeframe)
    return report


def print_walk_forward(out: Console, report: WalkForwardReport) -> None:
    from services.backtest.walk_forward import FOLD_HEADER, fold_rows

    summary = report.summary
    table = Table(title=f"walk-forward {report.run_id}: per fold", title_justify="left")
    for k, name in enumerate(FOLD_HEADER):
        ranges = k in (1, 3)
        table.add_column(name, justify="left" if ranges else "right", no_wrap=ranges)
    rows = fold_rows(summary)
    for row in rows[:-1]:  # a range on two lines: start, then end
        table.add_row(*(cell.replace(" .. ", "\n") for cell in row))
    table.add_section()
    table.add_row(*rows[-1], style="bold")
    out.print(table)
    out.print(
        f"chained return {summary.chained_return:+.2%} (buy and hold "
        f"{summary.chained_buy_and_hold:+.2%}), max drawdown {summary.max_drawdown:.2%}; "
        f"report {report.report_path}",
        highlight=False,
    )
