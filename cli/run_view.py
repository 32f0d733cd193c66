"""What `tradeflow run` shows: progress bars fed by the `tradeflow.progress` log records, and
the summary of what the run left in the ledger."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from cli.progress import ProgressBars
from infra.settings import Settings

if TYPE_CHECKING:  # the flows are imported only once the offline environment is set
    from flows.pipeline import PipelineReport
    from services.ingest import IngestReport
    from services.summary import LedgerSummary, PositionLine
    from services.training import TrainingReport

STAGES = {"ingest": "ingest candles", "train": "features, train, register"}


class RunProgress(ProgressBars):
    """A progress bar per stage, advanced by the records services.progress logs."""

    def __init__(self, console: Console, replay_candles: int) -> None:
        super().__init__(console)
        self.replay_candles = replay_candles
        self.tasks: dict[str, object] = {}

    def emit(self, record: logging.LogRecord) -> None:
        stage = getattr(record, "stage", None)
        if stage is not None:
            self._stage(stage)
        elif getattr(record, "candle", None) is not None and "decide" in self.tasks:
            self.bars.advance(self.tasks["decide"])  # type: ignore[arg-type]

    def _stage(self, name: str) -> None:
        for task in self.tasks.values():
            self.bars.update(task, completed=self.bars.tasks[task].total)  # type: ignore[index,arg-type]
        if name == "decide":
            label = f"replay {self.replay_candles} candles (paper)"
            self.tasks[name] = self.bars.add_task(label, total=self.replay_candles)
        elif name in STAGES:
            self.tasks[name] = self.bars.add_task(STAGES[name], total=1)


def print_summary(
    console: Console,
    settings: Settings,
    report: PipelineReport,
    summary: LedgerSummary,
    elapsed: float,
) -> None:
    console.print(_ingest_table(report.ingest))
    _print_model(console, report.training)
    _print_decisions(console, report, summary)
    console.print(_positions_table(summary.positions))
    console.print(
        f"cash {summary.cash:.2f}  equity {summary.equity:.2f}  "
        f"P&L {summary.pnl:+.2f} USDT (from {summary.starting_cash:.2f})"
    )
    console.print(f"\nfinished in {elapsed:.1f}s. Look at what was just recorded:")
    console.print(
        f"  Prefect UI: PREFECT_HOME={settings.var_dir / 'prefect'} "
        ".venv/bin/prefect server start --host 127.0.0.1 --port 4200  "
        "-> http://127.0.0.1:4200/runs"
    )
    console.print(
        f"  MLflow UI:  .venv/bin/mlflow ui --backend-store-uri {settings.tracking_uri} "
        "--host 127.0.0.1 --port 5000 --workers 1  -> http://127.0.0.1:5000/#/models"
    )
    console.print("  (or `make ui` for both)")


def _ingest_table(reports: Sequence[IngestReport]) -> Table:
    t = Table(title="Candles ingested", title_justify="left")
    for col in ("symbol", "source", "read", "new", "stored", "first", "last"):
        t.add_column(col)
    for r in reports:
        t.add_row(
            r.symbol,
            r.source.rsplit("/", 1)[-1],
            str(r.received),
            str(r.inserted),
            str(r.stored),
            f"{r.first:%Y-%m-%d %H:%M}" if r.first else "-",
            f"{r.last:%Y-%m-%d %H:%M}" if r.last else "-",
        )
    return t


def _print_model(console: Console, tr: TrainingReport) -> None:
    m = tr.metrics
    a, b = tr.ranges["out_of_fold"]
    t = Table(
        title=f"Model {tr.registered.name} v{tr.registered.version} "
        f"(feature set {tr.feature_set_version}, {tr.rows} rows; out of fold "
        f"{a[:16]} .. {b[:16]})",
        title_justify="left",
    )
    for col in ("member", "weight", "AUC", "log-loss", "Brier", "ECE"):
        t.add_column(col)
    for name in [*tr.weights, "ensemble"]:
        weight = "" if name == "ensemble" else f"{tr.weights[name]:.3f}"
        keys = ("auc", "log_loss", "brier", "ece")
        t.add_row(name, weight, *(f"{m.get(f'{name}_oof_{k}', float('nan')):.4f}" for k in keys))
    console.print(t)
    for member, note in tr.notes.items():
        console.print(f"  {member}: {note}")
    console.print(
        f"promotion: {tr.promotion.reason} -> champion is v{tr.promotion.champion_version}"
    )


def _print_decisions(console: Console, report: PipelineReport, summary: LedgerSummary) -> None:
    d = report.decisions
    console.print(
        f"\n[bold]Decisions[/] since {report.replay_from} "
        f"({len(d.candle_times)} candles, {d.skipped_existing} already decided earlier):"
    )
    console.print(
        "  "
        + "  ".join(f"{a}={summary.actions.get(a, 0)}" for a in ("BUY", "SELL", "HOLD", "NO_TRADE"))
    )
    _print_agents(console, summary)
    console.print(f"  denied by the risk gate: {summary.denied_decisions}")
    for reason, count in summary.denial_reasons.most_common():
        console.print(f"    {reason}: {count}")
    console.print(
        f"  orders: {dict(summary.orders_by_status)}  fills: {summary.fills}  "
        f"fees: {summary.fees:.2f}"
    )


def _print_agents(console: Console, summary: LedgerSummary) -> None:
    panels = ", ".join(f"{p} ({n})" for p, n in summary.panels.most_common()) or "none"
    console.print(f"  agents: {panels}", highlight=False)
    use = summary.agent_usage
    if use.calls:
        outcomes = ", ".join(f"{k}={n}" for k, n in use.outcomes.most_common())
        console.print(
            f"  LLM calls: {use.calls} ({outcomes}); tokens in {use.tokens_in:,} out "
            f"{use.tokens_out:,}; cost {use.cost:.4f}",
            highlight=False,
        )
    if summary.abstentions:
        why = ", ".join(f"{k}={n}" for k, n in summary.abstentions.most_common())
        console.print(f"  agent abstentions: {why}", highlight=False)


def _positions_table(positions: Sequence[PositionLine]) -> Table:
    t = Table(title="Positions (paper)", title_justify="left")
    for col in ("symbol", "quantity", "avg price", "last", "unrealised", "realised"):
        t.add_column(col, justify="right")
    for p in positions:
        t.add_row(
            p.symbol,
            f"{p.quantity}",
            f"{p.avg_price:.2f}",
            f"{p.last_price:.2f}",
            f"{p.unrealised_pnl:.2f}",
            f"{p.realised_pnl:.2f}",
        )
    return t
