"""Walk-forward scaling: the same folds through the walk-forward flow on 1, then on 2 local Dask
worker processes (one thread each), under one Prefect server.

Run (from the repo root): .venv/bin/python -m bench.walk_forward [--timeframe 1h]
     [--pairs BTC,ETH] [--folds 4] [--every 30] [--train-window 90] [--repeats 1]

Workload: BTC/USDT and ETH/USDT (or --pairs) Binance spot candles of 2024 (the shared
genetrader feather files, read from the files, nothing ingested), folds of --every days from
2024-05-01, each training the ensemble (XGBoost + LightGBM) on the --train-window days before
it and backtesting the fold through the live decision code on its own memory ledger.

Figures: wall time of the whole flow per worker count (cluster start-up included), the
speed-up (1-worker wall / 2-worker wall), per fold its seconds (training, replay) and the
peak resident memory of the worker process that ran it (psutil, sampled every 50 ms), and
the cores the run used and those everything else on the machine used meanwhile (/proc/stat
less this process and its ended children: the figures are only as good as an idle machine).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from infra.shared_data import locate_shared_data

DATA = locate_shared_data() / "ohlcv" / "genetrader-binance-spot-2024"
START = datetime(2024, 5, 1, tzinfo=UTC)
PAIRS = "BTC,ETH"  # BTC first: the reference the features are computed against


def environment(var_dir: Path, timeframe: str, symbols: str) -> None:
    """Settings for every process of the run (Dask workers inherit them)."""
    (var_dir / "prefect").mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "TRADEFLOW_VAR_DIR": str(var_dir),
            "TRADEFLOW_DATA_DIR": str(DATA),
            "TRADEFLOW_SYMBOLS": symbols,
            "TRADEFLOW_WHITELIST": symbols,
            "TRADEFLOW_TIMEFRAME": timeframe,
            "PREFECT_HOME": str(var_dir / "prefect"),
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "DASK_DISTRIBUTED__LOGGING__DISTRIBUTED": "warning",
        }
    )
    from infra.settings import apply_offline_env

    apply_offline_env(var_dir)


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, of this process and its ended children)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, _steal = ticks
    me, ended = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    ours = me.ru_utime + me.ru_stime + ended.ru_utime + ended.ru_stime
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK"), ours


def one_run(workers: int, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    from flows.walk_forward import dask_runner, walk_forward

    every = timedelta(days=args.every)
    load = os.getloadavg()[0]
    busy, ours = cpu_seconds()
    started = time.perf_counter()
    report = walk_forward.with_options(task_runner=dask_runner(workers))(
        START, START + args.folds * every, every, timedelta(days=args.train_window),
        run_id=f"bench-{tag}",
    )  # fmt: skip
    wall = time.perf_counter() - started
    busy_after, ours_after = cpu_seconds()
    folds = report.summary.folds
    return {
        "workers": workers,
        "wall": wall,
        "load": load,
        "ours": (ours_after - ours) / wall,  # cores this run used on average
        "others": (busy_after - busy - (ours_after - ours)) / wall,  # the server's, other jobs'
        "work": sum(sum(r.seconds.values()) for r in folds),
        "train": [r.seconds.get("train", 0.0) for r in folds],
        "decide": [r.seconds.get("decide", 0.0) for r in folds],
        "peak_mb": [r.peak_memory_mb or 0.0 for r in folds],
        "rows": [r.train_rows for r in folds],
        "processes": len({r.worker for r in folds}),
        "chained": report.summary.chained_return,
    }


def print_run(run: dict[str, Any]) -> None:
    print(
        f"{run['workers']} worker(s): wall {run['wall']:6.1f} s, fold work {run['work']:6.1f} s "
        f"on {run['processes']} process(es), chained return {run['chained']:+.2%}"
    )
    print(
        f"   cores used on average: this run {run['ours']:.2f}, everything else "
        f"{run['others']:.2f} (the Prefect server and other jobs; load before {run['load']:.1f})"
    )
    for k, (train, decide, peak, rows) in enumerate(
        zip(run["train"], run["decide"], run["peak_mb"], run["rows"], strict=True), 1
    ):
        print(f"   fold {k}: {rows:6} training rows, train {train:5.1f} s, replay {decide:5.1f} s, "
              f"worker peak RSS {peak:5.0f} MB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeframe", default="1h")
    parser.add_argument("--pairs", default=PAIRS, help="base assets against USDT, BTC first")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--every", type=int, default=30, help="fold length, days")
    parser.add_argument("--train-window", type=int, default=90, help="days before each fold")
    parser.add_argument("--repeats", type=int, default=1, help="1 then 2 workers, this often")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tradeflow-wf-bench-") as tmp:
        symbols = ",".join(f"{b.strip()}/USDT" for b in args.pairs.split(","))
        environment(Path(tmp) / "var", args.timeframe, symbols)
        from cli.prefect_server import managed_prefect_server

        print(
            f"{symbols} {args.timeframe}, {args.folds} folds of {args.every} d from {START:%F}, "
            f"{args.train_window} d of training each, {os.cpu_count()} cores"
        )
        runs: dict[int, list[float]] = {1: [], 2: []}
        with managed_prefect_server(Path(tmp) / "var"):
            for repeat in range(args.repeats):
                for workers in (1, 2):
                    run = one_run(workers, args, f"{workers}w-{repeat}")
                    print_run(run)
                    runs[workers].append(run["wall"])
        one, two = statistics.median(runs[1]), statistics.median(runs[2])
        print(f"speed-up 2 workers over 1: {one:.1f} s / {two:.1f} s = {one / two:.2f}x")


if __name__ == "__main__":
    main()
