"""`tradeflow evaluate`: purged walk-forward over one or more regimes of candle files, the model's
policy beside a naive baseline and buy-and-hold; prints the table, writes the HTML report and
logs both (with every number) as a run of the MLflow experiment `tradeflow-evaluation`.

Registered in cli/main.py as `app.command("evaluate")(evaluate_command)`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.options import load_settings
from infra.shared_data import locate_shared_data

if TYPE_CHECKING:
    import pandas as pd

    from core.models.evaluation import RegimeEvaluation

console = Console()
EXPERIMENT = "tradeflow-evaluation"
REGIMES = ("nfi-binance-spot-2021", "genetrader-binance-spot-2024")


def read_regime(
    folder: Path, timeframe: str, symbols: set[str] | None, reference: str
) -> dict[str, pd.DataFrame]:
    """Every `<BASE>_<QUOTE>-<timeframe>.*` candle file in `folder`, by symbol; the symbols
    asked for that have no file, or a missing reference symbol, are one line and exit 2."""
    from infra.market_data.files import read_candle_file

    paths = {p.name.split("-")[0].replace("_", "/"): p for p in folder.glob(f"*-{timeframe}.*")}
    if not paths:
        _refuse(f"no {timeframe} candle files in {folder}")
    asked = symbols or set(paths)
    missing = sorted(asked - set(paths))
    if missing:
        _refuse(f"no {timeframe} candle file for {missing} in {folder} (found: {sorted(paths)})")
    if reference not in asked:
        _refuse(f"{reference}, the reference symbol of the cross-asset features, must be evaluated")
    return {s: read_candle_file(paths[s]) for s in sorted(asked)}


def _refuse(message: str) -> None:
    console.print(f"[red]{message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _table(regime: RegimeEvaluation) -> Table:
    """Periods as columns, measures as rows: the table stays readable in 80 columns."""
    from infra.reports.evaluation_html import COLUMNS, row_of

    periods = [*regime.folds, regime.overall]
    table = Table(title=f"{regime.name}: {', '.join(regime.symbols)}", title_justify="left")
    table.add_column("")
    for fold in periods:
        table.add_column(
            f"{fold.label}\n{fold.start:%Y-%m-%d}\n{fold.end:%Y-%m-%d}", justify="right"
        )
    cells = [row_of(fold) for fold in periods]
    for i, name in enumerate(COLUMNS[1:], start=1):
        table.add_row(name, *(c[i] for c in cells))
    return table


def evaluate_command(
    regime: Annotated[
        list[str] | None,
        typer.Option(help=f"a folder of candle files (repeat); default: {', '.join(REGIMES)}"),
    ] = None,
    symbols: Annotated[str | None, typer.Option(help="only these, e.g. BTC/USDT,ETH/USDT")] = None,
    members: Annotated[
        str | None, typer.Option(help="e.g. xgboost,lightgbm (default: TRADEFLOW_MODEL_MEMBERS)")
    ] = None,
    folds: Annotated[int, typer.Option(min=2, max=20, help="outer walk-forward folds")] = 4,
) -> None:
    """Walk-forward evaluation of the ensemble and its decision policy, with the baseline."""
    from services import bootstrap
    from services.evaluation import evaluate_regime, goal_met

    settings = load_settings(console)
    chosen = members.split(",") if members else None
    cfg = bootstrap.evaluation_config(settings, chosen, folds)
    wanted = set(symbols.split(",")) if symbols else None
    folders = (
        [Path(r) for r in regime]
        if regime
        else [locate_shared_data() / "ohlcv" / r for r in REGIMES]
    )
    started, results = time.perf_counter(), []
    for folder in folders:
        candles = read_regime(folder, settings.timeframe, wanted, settings.reference_symbol)
        console.print(f"[bold]{folder.name}[/]: {len(candles)} pairs, walking forward ...")
        results.append(evaluate_regime(folder.name, candles, cfg))
        console.print(_table(results[-1]))
        checks = goal_met(results[-1])
        console.print(
            "  goal: " + "  ".join(f"{k} {'yes' if v else 'NO'}" for k, v in checks.items())
        )
    _record(settings, results, cfg, time.perf_counter() - started)


def _record(settings, results, cfg, seconds: float) -> None:  # type: ignore[no-untyped-def]
    from infra.reports.evaluation_html import write_evaluation
    from services import bootstrap
    from services.evaluation import evaluation_metrics, goal_met

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    meta = {
        "members": ",".join(m.name for m in cfg.members),
        "label": f"{cfg.label.horizon} horizon, cost {cfg.label.cost:.4f}",
        "folds": str(cfg.folds),
        "seconds": f"{seconds:.0f}",
    }
    path = settings.var_dir / "reports" / "evaluation" / f"evaluation-{stamp}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_evaluation(path, results, meta)
    registry = bootstrap.model_registry(settings)
    tags = {f"goal.{r.name}.{k}": str(v) for r in results for k, v in goal_met(r).items()}
    run_id = registry.log_run(
        EXPERIMENT, f"evaluation-{stamp}", meta, evaluation_metrics(results), tags, [path]
    )
    console.print(
        f"report: {path}\nMLflow run {run_id} in experiment {EXPERIMENT} ({seconds:.0f} s)"
    )
