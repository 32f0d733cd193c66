"""`tradeflow backtest-diff --from --to`: re-run a period that paper (or live) trading recorded
through the backtest, with the model version paper used, and list trade by trade what differs
and why (fill latency, partial fills, slippage, risk state, model version, agent votes)."""

from __future__ import annotations

import os
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.options import load_settings, parse_utc
from infra.settings import Settings

if TYPE_CHECKING:  # the model side is imported only when the command runs
    from services.backtest.diff import DiffReport, ModelUse, TradeSide
    from services.backtest.engine import BacktestWindow

console = Console()


def backtest_diff_command(
    start: Annotated[str, typer.Option("--from", help="first candle, UTC: 2024-01-01[T00:00]")],
    end: Annotated[str, typer.Option("--to", help="candles opening before this are compared")],
    model_version: Annotated[
        str | None,
        typer.Option(help="re-run with this registered version (default: the one paper used)"),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="the most differences listed")] = 200,
) -> None:
    """Re-run a period paper trading recorded (account: TRADEFLOW_ACCOUNT) through the backtest
    and list, trade by trade, what differs and the cause where it can be named. Nothing is
    stored."""
    from core.errors import TradeflowError

    settings = _settings()
    window = _window(start, end)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    try:
        report = run_diff(settings, window, model_version)
    except TradeflowError as exc:
        console.print(
            f"[red]error:[/] {type(exc).__name__}: {exc}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(1) from None
    print_diff(console, report, limit)


def run_diff(settings: Settings, window: BacktestWindow, model_version: str | None) -> DiffReport:
    """Paper's records of the window, the model it used, the re-run, the comparison."""
    from core.clock import SystemClock
    from core.errors import FatalError
    from services import bootstrap
    from services.backtest import compose
    from services.backtest.diff import backtest_diff, choose_version, models_used, recorded

    ledger = bootstrap.ledger(settings)
    paper = recorded(ledger, settings.account, window, settings.timeframe)
    if not paper.decisions:
        raise FatalError(
            f"account {settings.account!r} recorded no {settings.timeframe} decision between "
            f"{window.start:%F %H:%M} and {window.end:%F %H:%M} UTC: nothing to compare"
        )
    used = models_used(paper.decisions)
    version = model_version or choose_version(used, _champion(settings, used))
    run_id = compose.new_run_id(SystemClock().now())
    chosen = compose.backtest_settings(settings, None, None, f"diff-{run_id}")
    parts = compose.parts(chosen, compose.model(chosen, version))
    read = compose.reader(chosen, ledger)
    return backtest_diff(ledger, read, parts, settings.account, window, paper)


def _champion(settings: Settings, used: tuple[ModelUse, ...]) -> str | None:
    """The champion's version, asked only when paper used several (None if there is none)."""
    if len({m.version for m in used}) < 2:
        return None
    from core.errors import TradeflowError
    from services import bootstrap

    try:
        return bootstrap.champion(settings).get().version
    except TradeflowError:
        return None


# -- what the terminal shows --------------------------------------------------------------
def print_diff(console: Console, report: DiffReport, limit: int = 200) -> None:
    console.print(summary_line(report), highlight=False, soft_wrap=True)
    console.print(_models_line(report), highlight=False, soft_wrap=True)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    if not report.diffs:
        console.print("[green]every trade matched[/]")
        return
    console.print(diff_table(report, limit))
    if len(report.diffs) > limit:
        console.print(f"... {len(report.diffs) - limit} more (--limit)", highlight=False)


def summary_line(report: DiffReport) -> str:
    w = report.window
    kinds = ", ".join(f"{k.value} {n}" for k, n in report.by_kind().items()) or "none"
    return (
        f"{report.account} vs backtest, {w.start:%F %H:%M} .. {w.end:%F %H:%M} UTC: "
        f"{report.paper_trades} paper trades, {report.backtest_trades} backtest trades, "
        f"{report.identical} identical; differences: {kinds}"
    )


def _models_line(report: DiffReport) -> str:
    paper = ", ".join(f"{m.name} v{m.version}" for m in report.paper_models) or "none"
    name, version = report.backtest_model
    return f"model: paper {paper}; backtest {name} v{version}"


def diff_table(report: DiffReport, limit: int = 200) -> Table:
    t = Table(title="trades that differ", title_justify="left")
    for col in ("Candle (UTC)", "Pair", "Kind", "Paper", "Backtest", "Cause"):
        t.add_column(col, overflow="fold")
    for d in report.diffs[:limit]:
        t.add_row(
            f"{d.candle_time:%F %H:%M}",
            d.symbol,
            d.kind.value,
            _side(d.paper),
            _side(d.backtest),
            "\n".join(d.causes),
        )
    return t


def _side(side: TradeSide | None) -> str:
    if side is None:
        return "-"
    text = f"{side.side.value} {_num(side.filled)} of {_num(side.ordered)}"
    price = side.average_price
    if price is None:
        return f"{text}, {side.status.value}"
    return f"{text} @ {price:.8g}, {len(side.fills)} fill(s) from +{side.latency} candle(s)"


def _num(value: Decimal) -> str:
    return f"{value.normalize():f}"


# -- settings and dates, as the other commands read them ----------------------------------
def _settings() -> Settings:
    return load_settings(console)


def _window(start: str, end: str) -> BacktestWindow:
    from core.errors import TradeflowError
    from services.backtest.engine import BacktestWindow

    try:
        return BacktestWindow(_utc(start, "--from"), _utc(end, "--to"))
    except TradeflowError as exc:
        console.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None


def _utc(text: str, option: str) -> datetime:
    return parse_utc(text, option, console)
