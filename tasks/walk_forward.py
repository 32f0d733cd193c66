"""Walk-forward tasks: plan the folds, train and test one fold (on whichever Dask worker the
flow's task runner sends it to), then the per-fold table as a report and a Prefect artifact.

Every task takes plain, picklable values and builds what it needs from the environment
(services.bootstrap.get_settings()), so a worker process or a remote Dask worker runs it as
the flow's own process would. Nothing is written to the SQL ledger or to MLflow: each fold
trades on its own memory ledger, and its model lives as long as its fold."""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from core.clock import SystemClock
from services import bootstrap
from services.backtest import compose
from services.backtest.walk_forward import (
    FOLD_HEADER,
    Fold,
    FoldResult,
    WalkForwardSummary,
    fold_rows,
    plan_folds,
    report_page,
    run_fold,
    summarise,
)
from tasks.retry import only_retryable

Symbols = tuple[str, ...] | None


@task(name="walk-forward-plan", cache_policy=NO_CACHE)
def plan_walk_forward(
    run_id: str,
    symbols: Symbols,
    timeframe: str | None,
    window: tuple[datetime, datetime],
    retrain_every: timedelta,
    train_window: timedelta | None,
) -> list[Fold]:
    """The folds; also checks the symbols (the reference among them) and opens the ledger
    once, so the workers find it migrated."""
    base = bootstrap.get_settings()
    compose.backtest_settings(base, symbols, timeframe, run_id)
    bootstrap.ledger(base)
    return plan_folds(window[0], window[1], retrain_every, train_window)


@task(name="walk-forward-fold", task_run_name="fold-{fold.number}", retries=1,
      retry_delay_seconds=2, retry_condition_fn=only_retryable, cache_policy=NO_CACHE)  # fmt: skip
def walk_forward_fold(
    run_id: str, symbols: Symbols, timeframe: str | None, fold: Fold
) -> FoldResult:
    """Train on the candles before the fold, backtest the fold; with the worker's peak
    resident memory while it did."""
    base = bootstrap.get_settings()
    fold_id = f"{run_id}-f{fold.number}"
    settings = compose.backtest_settings(base, symbols, timeframe, fold_id)
    read = compose.reader(settings, bootstrap.ledger(base))
    cfg = bootstrap.training_config(settings)
    with PeakMemory() as memory:
        result = run_fold(
            read,
            lambda model: compose.parts(settings, model),
            cfg,
            fold,
            fold_id,
            SystemClock().now(),
        )
    worker = f"{socket.gethostname()}:{os.getpid()}"
    return replace(result, peak_memory_mb=memory.peak_mb, worker=worker)


@dataclass(frozen=True, eq=False)
class WalkForwardReport:
    run_id: str
    summary: WalkForwardSummary
    report_path: Path


@task(name="walk-forward-report", cache_policy=NO_CACHE)
def report_walk_forward(
    run_id: str, symbols: Symbols, timeframe: str | None, results: list[FoldResult]
) -> WalkForwardReport:
    """The chained figures; var/walk-forward/<run id>/report.html; a markdown artifact."""
    settings = compose.backtest_settings(bootstrap.get_settings(), symbols, timeframe, run_id)
    summary = summarise(results, settings.timeframe)
    meta = {
        "run id": run_id,
        "symbols": ", ".join(settings.symbols),
        "timeframe": settings.timeframe,
        "model": f"{settings.model_name}-walkforward (one per fold, not registered)",
        "starting cash per fold": str(settings.starting_cash),
    }
    path = settings.var_dir / "walk-forward" / run_id / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_page(summary, f"tradeflow walk-forward {run_id}", meta))
    publish_walk_forward(run_id, summary, path)
    return WalkForwardReport(run_id, summary, path)


def markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def publish_walk_forward(run_id: str, summary: WalkForwardSummary, path: Path) -> None:
    get_run_logger().info(
        "walk-forward %s: %d folds, chained return %+.2f%% (buy and hold %+.2f%%), max "
        "drawdown %.2f%%, report %s",
        run_id, len(summary.folds), summary.chained_return * 100,
        summary.chained_buy_and_hold * 100, summary.max_drawdown * 100, path,
    )  # fmt: skip
    body = "\n\n".join(
        [
            f"## Walk-forward {run_id}",
            markdown_table(FOLD_HEADER, fold_rows(summary)),
            f"Report: `{path}`",
        ]
    )
    create_markdown_artifact(body, key="walk-forward", description=run_id)


class PeakMemory:
    """This process's peak resident memory (MB) while the block runs, sampled every 50 ms
    (psutil comes with dask.distributed); None where psutil is missing."""

    def __init__(self, every_s: float = 0.05) -> None:
        self.every_s = every_s
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        try:
            import psutil
        except ImportError:
            return self
        process = psutil.Process()
        self.peak_mb = process.memory_info().rss / 2**20
        self._thread = threading.Thread(target=self._sample, args=(process,), daemon=True)
        self._thread.start()
        return self

    def _sample(self, process: object) -> None:
        while True:
            rss = process.memory_info().rss / 2**20  # type: ignore[attr-defined]
            self.peak_mb = max(self.peak_mb or 0.0, rss)
            if self._stop.wait(self.every_s):
                return

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
