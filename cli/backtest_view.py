"""What a backtest shows on the terminal, freqtrade-style: a table per pair with a TOTAL row,
then the run's summary with buy-and-hold beside the strategy."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from types import TracebackType

from rich.console import Console
from rich.table import Table

from cli.progress import ProgressBars
from core.backtest.stats import BacktestStats, PairStats, RunStats
from core.records import BacktestRun
from core.types import quote_of


def print_backtest(console: Console, stats: BacktestStats, title: str) -> None:
    quote = _quote(stats)
    console.print(_pairs_table(stats, title, quote))
    console.print(_summary_table(stats.run, title, quote))


def _quote(stats: BacktestStats) -> str:
    quotes = {quote_of(p.symbol) for p in stats.pairs if "/" in p.symbol}
    return quotes.pop() if len(quotes) == 1 else "quote"


def _pairs_table(stats: BacktestStats, title: str, quote: str) -> Table:
    t = Table(title=f"{title}: backtest results per pair", title_justify="left")
    t.add_column("Pair")
    for col in (
        "Trades",
        "Avg profit %",
        f"Tot profit {quote}",
        "Tot profit %",
        "Avg duration",
        "Win  Draw  Loss  Win%",
        "Fees",
    ):
        t.add_column(col, justify="right")
    for pair in stats.pairs:
        t.add_row(*_pair_cells(pair))
    t.add_section()
    t.add_row(*_pair_cells(stats.total), style="bold")
    return t


def _pair_cells(p: PairStats) -> list[str]:
    return [
        p.symbol,
        str(p.trades),
        f"{p.avg_profit_pct:.2f}",
        f"{p.total_profit:.3f}",
        f"{p.total_profit_pct:.2f}",
        _duration(p.avg_duration),
        f"{p.wins}  {p.draws}  {p.losses}  {p.win_rate * 100:.1f}",
        f"{p.fees:.3f}",
    ]


def _summary_table(run: RunStats, title: str, quote: str) -> Table:
    t = Table(title=f"{title}: summary", title_justify="left")
    t.add_column("Metric")
    t.add_column("Strategy", justify="right")
    t.add_column("Buy and hold", justify="right")
    when = f"{_time(run.max_drawdown_start)} .. {_time(run.max_drawdown_end)}"
    dd = f"{_pct(run.max_drawdown)} ({when})"
    rows = [
        ("Backtesting from", _time(run.start), ""),
        ("Backtesting to", _time(run.end), ""),
        ("Timeframe", run.timeframe, ""),
        ("Starting balance", _money(run.starting_cash, quote), _money(run.starting_cash, quote)),
        ("Final balance", _money(run.final_equity, quote), _money(_held_final(run), quote)),
        ("Total return", _pct(run.total_return, signed=True), _pct(run.buy_and_hold_return, True)),
        ("CAGR", _pct(run.cagr, signed=True), ""),
        ("Sharpe", _ratio(run.sharpe), ""),
        ("Sortino", _ratio(run.sortino), ""),
        ("Calmar", _ratio(run.calmar), ""),
        ("Max drawdown", dd, ""),
        ("Exposure", _pct(run.exposure), ""),
        ("Trades", str(run.trades), ""),
        ("Win rate", _pct(run.win_rate), ""),
        ("Fees", _money(run.fees, quote), ""),
        ("Best pair", run.best_pair or "-", ""),
        ("Worst pair", run.worst_pair or "-", ""),
    ]
    rows += [(f"Market change {s}", "", _pct(c, True)) for s, c in run.market_change.items()]
    for row in rows:
        t.add_row(*row)
    return t


def _held_final(run: RunStats) -> Decimal:
    return run.starting_cash * Decimal(repr(1.0 + run.buy_and_hold_return))


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value * 100:+.2f}%" if signed else f"{value * 100:.2f}%"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _money(value: Decimal, quote: str) -> str:
    return f"{value:,.3f} {quote}"


def _time(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M}"


def _duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    minutes = int(value.total_seconds() // 60)
    days, rest = divmod(minutes, 1440)
    clock = f"{rest // 60}:{rest % 60:02d}"
    return f"{days} day{'s' if days != 1 else ''}, {clock}" if days else clock


class BacktestProgress(ProgressBars):
    """A progress bar over the window's candles, advanced by the replay's progress records,
    redrawn every `every` candles: a backtest decides tens of thousands."""

    def __init__(self, console: Console, candles: int, every: int = 250) -> None:
        super().__init__(console)
        self.every, self._seen = every, 0
        self.task = self.bars.add_task("backtest candles", total=candles)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.bars.update(self.task, completed=self._seen)
        super().__exit__(kind, exc, tb)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "candle", None) is None:
            return
        self._seen += 1
        if self._seen % self.every == 0:
            self.bars.update(self.task, completed=self._seen)


def print_run(
    console: Console, run: BacktestRun, seconds: Mapping[str, float], candles: int
) -> None:
    """Where the run is kept, and how fast it went."""
    decide = seconds.get("decide", 0.0)
    speed = f"{candles / decide:,.0f} symbol-candles/s" if decide else "n/a"
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
    console.print(
        f"run {run.run_id}: {candles:,} symbol-candles, decide loop {speed} ({stages})\n"
        f"ledger account [bold]{run.account}[/] (decisions, orders, fills, positions)\n"
        f"report {run.report_path}",
        highlight=False,
        soft_wrap=True,
    )
