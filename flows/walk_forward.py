"""Walk-forward: retrain every period, test the period after, chain the periods' returns.

The folds are independent (each trains on what came before it and trades its own memory
ledger from the same cash), so they are mapped over Dask workers by prefect-dask's
DaskTaskRunner: a local cluster by default, or a running one at TRADEFLOW_DASK_ADDRESS. The
symbols of one fold are not split: they share one account's cash and risk limits, and the
features of each are computed against the reference symbol.

    walk_forward.with_options(task_runner=dask_runner(workers=4))(start, end, timedelta(days=30))
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta

from prefect import flow, unmapped
from prefect_dask import DaskTaskRunner

from core.clock import SystemClock
from flows.run_logs import set_up_logs
from services.backtest.compose import new_run_id
from tasks.walk_forward import (
    WalkForwardReport,
    plan_walk_forward,
    report_walk_forward,
    walk_forward_fold,
)

DASK_ADDRESS_ENV = "TRADEFLOW_DASK_ADDRESS"
DEFAULT_WORKERS = 2
# XGBoost and LightGBM train with OpenMP threads (n_jobs=2) that spin while they wait; two
# workers fitting at once on two busy cores then take ~80 s a fit instead of ~3.5 s (measured
# here). Waiting threads that sleep keep folds side by side as fast as one alone.
WORKER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def dask_runner(workers: int = DEFAULT_WORKERS, address: str | None = None) -> DaskTaskRunner:
    """A running Dask scheduler at `address` (default: TRADEFLOW_DASK_ADDRESS), else a local
    cluster of `workers` processes of one thread each (a fold is CPU-bound Python: processes,
    not threads, run folds side by side). Worker processes inherit this process's environment,
    the TRADEFLOW_* settings and PREFECT_API_URL included."""
    address = address or os.environ.get(DASK_ADDRESS_ENV) or None
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
            "silence_logs": logging.WARNING,
            "env": WORKER_ENV,
        }
    )


@flow(name="walk-forward", task_runner=dask_runner())
def walk_forward(
    start: datetime,
    end: datetime,
    retrain_every: timedelta,
    train_window: timedelta | None = None,
    symbols: list[str] | None = None,
    timeframe: str | None = None,
    run_id: str | None = None,
) -> WalkForwardReport:
    """Cut [start, end) into folds of `retrain_every`; per fold (in parallel), train on the
    `train_window` before it (default: all history before it) and backtest it; then the
    per-fold table, the chained return, var/walk-forward/<run id>/report.html and an artifact."""
    set_up_logs()
    rid = run_id or new_run_id(SystemClock().now())
    chosen = tuple(symbols) if symbols else None
    folds = plan_walk_forward(rid, chosen, timeframe, (start, end), retrain_every, train_window)
    results = walk_forward_fold.map(unmapped(rid), unmapped(chosen), unmapped(timeframe), folds)
    return report_walk_forward(rid, chosen, timeframe, results.result())
