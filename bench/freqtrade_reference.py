"""Reference figure: freqtrade itself backtesting our workload, offline, on this machine.

Our backtest bench prints freqtrade's figure beside its own, measured in the same run, so the
comparison holds on a busy 2-core machine where absolute seconds drift from run to run.

Workload: 8 Binance spot USDT pairs, 5m candles from the shared genetrader feather files,
timerange 20240101-20240901, the EMA(12/26) cross + RSI(14) strategy in
bench/freqtrade/strategies/ema_rsi_strategy.py, stake 1000 USDT, wallet 10000,
max_open_trades 8, fee 0.001 (bench/freqtrade/config.json).

How it runs:
- freqtrade lives in its own venv, var/bench/freqtrade-venv (built on first use; minutes),
  never in tradeflow's .venv: its pins (pandas, numpy, ccxt...) are not ours.
- freqtrade loads Binance's markets through ccxt at start-up. bench/freqtrade/offline_freqtrade.py
  serves them from ccxt's recorded Binance responses (shared data, exchange/ccxt-static) and
  refuses every other request; where `unshare --net` works the command also runs without any
  network interface, so a missed call fails instead of reaching out.
- The figure is the wall time of the whole `freqtrade backtesting` process (start-up, data
  load, indicators, trade loop, report, result export), as a user would time it.

Run: .venv/bin/python bench/freqtrade_reference.py [--runs N] [--shared-data PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

EIGHT_PAIRS: tuple[str, ...] = (
    "BTC/USDT",
    "ETH/USDT",
    "SOL/USDT",
    "XRP/USDT",
    "DOGE/USDT",
    "LINK/USDT",
    "LTC/USDT",
    "AVAX/USDT",
)
FREQTRADE_PIN = "2026.9"  # when the registry lacks it, the newest release it has
TIMEFRAME = "5m"
STRATEGY = "EmaRsiStrategy"
FEE = 0.001

VENV_DIR = Path("var/bench/freqtrade-venv")
USER_DIR = Path("var/bench/freqtrade-user")
DATA_DIR = USER_DIR / "data" / "binance"
TEMPLATES_DIR = Path("bench/freqtrade")
OHLCV_SET = Path("ohlcv/genetrader-binance-spot-2024")
CCXT_STATIC = Path("exchange/ccxt-static")

INSTALL_TIMEOUT_S = 1800.0
RUN_TIMEOUT_S = 1800.0
_NO_MATCH = "No matching distribution found"
# freqtrade core needs no torch; an unsatisfiable constraint makes a dependency that would
# pull torch (and its CUDA wheels) fail the install instead of downloading gigabytes.
_CONSTRAINTS = "torch<0\n"
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - \S+ - \w+ - (.*)$", re.M)
_MAX_RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


class FreqtradeUnavailable(RuntimeError):
    """freqtrade cannot produce a figure here: no package, install failed, run failed..."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class FreqtradeFigure:
    version: str
    seconds: float  # wall time of the whole freqtrade backtesting process
    candles: int  # sum over pairs of candles inside the timerange (both ends included)
    trades: int
    peak_rss_mb: float | None
    # From freqtrade's "Backtesting with data from" log line to its result dump: entry/exit
    # signals, the trade loop and the statistics; None when those lines are missing.
    loop_seconds: float | None = None

    @property
    def candles_per_s(self) -> float:
        return self.candles / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Run:
    seconds: float
    returncode: int
    log: str
    peak_rss_mb: float | None


def _run(cmd: Sequence[str], what: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a command; a missing program or a timeout becomes FreqtradeUnavailable."""
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FreqtradeUnavailable(f"{what}: {exc}") from exc


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _freqtrade_version(python: Path) -> str | None:
    if not python.exists():
        return None
    probe = "import freqtrade; print(freqtrade.__version__)"
    proc = _run([str(python), "-I", "-c", probe], "probing freqtrade", 300)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _pip_install(python: Path, spec: str, constraints: Path) -> subprocess.CompletedProcess[str]:
    cmd = [str(python), "-m", "pip", "install", "-q", "-c", str(constraints), spec]
    return _run(cmd, f"pip install {spec}", INSTALL_TIMEOUT_S)


def _install_freqtrade(python: Path, venv: Path) -> None:
    constraints = venv / "tradeflow-constraints.txt"
    constraints.write_text(_CONSTRAINTS)
    proc = _pip_install(python, f"freqtrade=={FREQTRADE_PIN}", constraints)
    if proc.returncode != 0 and _NO_MATCH in proc.stdout + proc.stderr:
        # The registry lacks the pinned release: take the newest it has (the figure names it).
        proc = _pip_install(python, "freqtrade", constraints)
    if proc.returncode != 0:
        raise FreqtradeUnavailable(f"pip install freqtrade failed:\n{_tail(proc.stderr)}")


def ensure_venv(repo_root: Path) -> Path:
    """The freqtrade venv, created and installed on first use; reused when freqtrade imports."""
    venv = repo_root / VENV_DIR
    python = venv / "bin" / "python"
    if _freqtrade_version(python) is not None:
        return venv
    if not python.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        proc = _run([sys.executable, "-m", "venv", str(venv)], "python -m venv", 600)
        if proc.returncode != 0:
            raise FreqtradeUnavailable(f"python -m venv {venv} failed:\n{_tail(proc.stderr)}")
    _install_freqtrade(python, venv)
    if _freqtrade_version(python) is None:
        raise FreqtradeUnavailable(f"pip succeeded but freqtrade does not import in {venv}")
    return venv


def _link_candles(shared_data: Path, data_dir: Path, pairs: Sequence[str]) -> list[Path]:
    """Symlink each pair's feather file where freqtrade looks for it; returns the sources."""
    data_dir.mkdir(parents=True, exist_ok=True)
    sources = []
    for pair in pairs:
        name = f"{pair.replace('/', '_')}-{TIMEFRAME}.feather"
        source = shared_data / OHLCV_SET / name
        if not source.is_file():
            raise FreqtradeUnavailable(f"no {TIMEFRAME} candles for {pair}: {source} is missing")
        link = data_dir / name
        link.unlink(missing_ok=True)
        link.symlink_to(source)
        sources.append(source)
    return sources


def _parse_day(text: str) -> datetime:
    layout = "%Y%m%dT%H%M" if "T" in text else "%Y%m%d"
    return datetime.strptime(text, layout).replace(tzinfo=UTC)


def count_candles(files: Sequence[Path], timerange: str) -> int:
    """Candles inside the timerange, summed over files; freqtrade keeps both ends."""
    start_text, _, stop_text = timerange.partition("-")
    if not start_text or not stop_text:
        raise ValueError(f"timerange needs a start and a stop date: {timerange!r}")
    start, stop = _parse_day(start_text), _parse_day(stop_text)
    total = 0
    for path in files:
        dates = pd.read_feather(path, columns=["date"])["date"]
        total += int(((dates >= start) & (dates <= stop)).sum())
    return total


@functools.cache
def _network_jail() -> tuple[str, ...]:
    """`unshare --net` when this machine allows it: the run then has no network at all."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    try:
        probe = subprocess.run([unshare, "--net", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return (unshare, "--net") if probe.returncode == 0 else ()


def _backtest_command(
    repo_root: Path, venv: Path, shared_data: Path, timerange: str, pairs: Sequence[str]
) -> list[str]:
    templates = repo_root / TEMPLATES_DIR
    user = repo_root / USER_DIR
    # -I: neither PYTHONPATH nor user site-packages from the caller leak into freqtrade's venv.
    return [
        *(str(venv / "bin" / "python"), "-I", str(templates / "offline_freqtrade.py")),
        *(str(shared_data / CCXT_STATIC), "backtesting", "--no-color"),
        *("--config", str(templates / "config.json"), "--userdir", str(user)),
        *("--datadir", str(repo_root / DATA_DIR), "--data-format-ohlcv", "feather"),
        *("--strategy-path", str(templates / "strategies"), "--strategy", STRATEGY),
        *("--timeframe", TIMEFRAME, "--timerange", timerange, "--fee", str(FEE)),
        # No cached result may stand in for a run; the export is where the trades are read.
        *("--cache", "none", "--export", "trades"),
        *("--backtest-directory", str(user / "backtest_results" / "latest")),
        *("--pairs", *pairs),
    ]


def _measured_run(cmd: Sequence[str], work: Path) -> _Run:
    """Run freqtrade under /usr/bin/time -v when present; wall seconds and peak RSS."""
    time_file = work / "time-v.txt"
    time_file.unlink(missing_ok=True)
    timer = ("/usr/bin/time", "-v", "-o", str(time_file)) if Path("/usr/bin/time").exists() else ()
    rss_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = _run([*timer, *_network_jail(), *cmd], "freqtrade backtesting", RUN_TIMEOUT_S)
    seconds = time.perf_counter() - start
    log = proc.stderr + proc.stdout
    (work / "last-run.log").write_text(log)
    return _Run(seconds, proc.returncode, log, _peak_rss_mb(time_file, rss_before))


def _peak_rss_mb(time_file: Path, rss_before_kb: int) -> float | None:
    if time_file.is_file() and (found := _MAX_RSS.search(time_file.read_text())):
        return int(found.group(1)) / 1024
    # RUSAGE_CHILDREN keeps the maximum over every child so far: it names this run's peak
    # only when this run raised it.
    rss_after_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return rss_after_kb / 1024 if rss_after_kb > rss_before_kb else None


def _count_trades(results: Path, run: _Run) -> int:
    """Trades from the result zip; freqtrade exits 0 on some config errors, so trust the file."""
    try:
        latest = json.loads((results / ".last_result.json").read_text())["latest_backtest"]
        with zipfile.ZipFile(results / latest) as archive:
            stats = json.loads(archive.read(Path(latest).with_suffix(".json").name))
        return int(stats["strategy"][STRATEGY]["total_trades"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise FreqtradeUnavailable(
            f"freqtrade backtesting (exit {run.returncode}) left no readable result "
            f"({exc}):\n{_tail(run.log)}"
        ) from exc


def _loop_seconds(log: str) -> float | None:
    start = end = None
    for stamp, message in _LOG_LINE.findall(log):
        if start is None and message.startswith("Backtesting with data from"):
            start = stamp
        elif start is not None and message.startswith("dumping json to"):
            end = stamp
            break
    if start is None or end is None:
        return None
    layout = "%Y-%m-%d %H:%M:%S,%f"
    return (datetime.strptime(end, layout) - datetime.strptime(start, layout)).total_seconds()


def _fresh_dir(path: Path) -> Path:
    # freqtrade treats a missing --backtest-directory as a file-name prefix, so create it.
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def run_reference(
    repo_root: Path,
    shared_data: Path,
    *,
    timerange: str = "20240101-20240901",
    pairs: Sequence[str] = EIGHT_PAIRS,
) -> FreqtradeFigure:
    """Backtest the workload with freqtrade once; raises FreqtradeUnavailable if it cannot."""
    if not (shared_data / CCXT_STATIC / "markets" / "binance.json").is_file():
        raise FreqtradeUnavailable(f"no recorded Binance markets under {shared_data / CCXT_STATIC}")
    venv = ensure_venv(repo_root)
    version = _freqtrade_version(venv / "bin" / "python") or "unknown"
    sources = _link_candles(shared_data, repo_root / DATA_DIR, pairs)
    results = _fresh_dir(repo_root / USER_DIR / "backtest_results" / "latest")
    cmd = _backtest_command(repo_root, venv, shared_data, timerange, pairs)
    run = _measured_run(cmd, results)
    return FreqtradeFigure(
        version=version,
        seconds=run.seconds,
        candles=count_candles(sources, timerange),
        trades=_count_trades(results, run),
        peak_rss_mb=run.peak_rss_mb,
        loop_seconds=_loop_seconds(run.log),
    )


def format_figure(figure: FreqtradeFigure) -> str:
    rss = f"{figure.peak_rss_mb:.0f} MB" if figure.peak_rss_mb is not None else "n/a"
    loop = f"{figure.loop_seconds:.1f} s" if figure.loop_seconds is not None else "n/a"
    return (
        f"freqtrade {figure.version}: {figure.seconds:.1f} s wall, {figure.candles} candles, "
        f"{figure.candles_per_s:,.0f} candles/s, {figure.trades} trades, "
        f"peak RSS {rss}, signals+loop {loop}"
    )


def _default_shared_data(repo_root: Path) -> Path:
    # Same convention as infra/shared_data.py: ../shared/data beside the checkout.
    env = os.environ.get("TRADEFLOW_SHARED_DATA")
    return Path(env) if env else repo_root.parent / "shared" / "data"


def main(argv: Sequence[str] | None = None) -> int:
    repo_root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description="freqtrade reference backtest figure")
    parser.add_argument("--shared-data", type=Path, default=_default_shared_data(repo_root))
    parser.add_argument("--timerange", default="20240101-20240901")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    for _ in range(args.runs):
        try:
            figure = run_reference(repo_root, args.shared_data, timerange=args.timerange)
        except FreqtradeUnavailable as exc:
            print(f"freqtrade reference unavailable: {exc.reason}")
            return 1
        print(format_figure(figure), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
