"""The object graph of one backtest, from settings: the settings a run trades under, a fresh
memory ledger and in-memory exchange, the model (champion or a named version), where candles
are read from, and where the report goes. The one place a backtest meets configuration."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pandas as pd

from core.alerts import Severity
from core.errors import ConfigurationError
from core.ports import DecisionSink, Ledger, Model
from core.records import BacktestRun
from infra.brokers.simulated import SimulatedBroker
from infra.ledger.memory import MemoryLedger
from infra.market_data.files import candle_file_for, read_candle_file
from infra.settings import Settings
from services import bootstrap
from services.backtest.engine import CandleReader
from services.backtest.session import BacktestParts, BacktestResult

log = logging.getLogger("tradeflow.backtest")


class BacktestAlerts:
    """A backtest's breaker trips are results, not incidents: kept and counted, never sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, title: str, body: str, *, severity: Severity = Severity.WARNING) -> bool:
        log.debug("%s: %s", title, body)
        self.sent.append((title, body))
        return True


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}"


def backtest_settings(
    settings: Settings, symbols: tuple[str, ...] | None, timeframe: str | None, run_id: str
) -> Settings:
    """The settings a run trades under: its own account (so nothing mixes with paper or live
    rows), its symbols as the whitelist (the pairs a user backtests are the pairs it may
    trade), every other limit as configured."""
    chosen = symbols or settings.symbols
    if settings.reference_symbol not in chosen:
        raise ConfigurationError(
            f"the features are computed against {settings.reference_symbol} "
            f"(TRADEFLOW_REFERENCE_SYMBOL): backtest it too, e.g. --symbols "
            f"{','.join((settings.reference_symbol, *chosen))}"
        )
    return settings.model_copy(
        update={
            "account": f"bt-{run_id}",
            "symbols": tuple(chosen),
            "whitelist": tuple(chosen),
            "timeframe": timeframe or settings.timeframe,
        }
    )


def parts(settings: Settings, model: Model, sink: DecisionSink | None = None) -> BacktestParts:
    """Fresh scratch ledger and exchange, with the paper exchange's fees, slippage, liquidity
    and latency (a backtest fills as paper trading would). With `sink`, decisions are written
    there as they are made instead of being held in memory."""
    return BacktestParts(
        scratch=MemoryLedger(sink),
        exchange=SimulatedBroker(bootstrap.simulation_config(settings)),
        model=model,
        panel=bootstrap.panel(settings),
        # A backtest's decisions are not replayed one by one: no provenance to keep.
        cfg=replace(bootstrap.decision_config(settings), record_provenance=False),
        alerts=BacktestAlerts(),
        starting_cash=settings.starting_cash,
    )


def model(settings: Settings, version: str | None) -> Model:
    """The champion, or version `version` of the configured model."""
    if version is None:
        return bootstrap.champion(settings).get()
    from core.features.registry import feature_set_version
    from registry.mlflow_registry import load_version

    bootstrap.mlflow_store(settings)
    return load_version(settings.model_name, version, feature_set_version())


def reader(settings: Settings, ledger: Ledger) -> CandleReader:
    """Candles from the ledger; for a symbol it has none of, from the candle files of
    TRADEFLOW_DATA_DIR when the source is files (as `make run` would ingest them)."""

    def read(symbol: str) -> pd.DataFrame:
        frame = ledger.candles.load(settings.exchange, symbol, settings.timeframe)
        if not frame.empty or settings.source != "files":
            return frame
        log.info("no %s %s candles in the ledger: reading the files", symbol, settings.timeframe)
        return read_candle_file(candle_file_for(settings.data_dir, symbol, settings.timeframe))

    return read


def report_path(settings: Settings, run_id: str) -> Path:
    return settings.var_dir / "backtests" / run_id / "report.html"


def write_report(settings: Settings, result: BacktestResult) -> Path:
    from infra.reports.backtest_html import write_report as write_html

    run = result.run
    meta = {
        "run id": run.run_id,
        "model": f"{run.model_name} v{run.model_version}",
        "window": f"{run.start:%F %H:%M} .. {run.end:%F %H:%M} UTC",
        "symbols": ", ".join(run.symbols),
        "timeframe": run.timeframe,
        "account": run.account,
    }
    title = f"tradeflow backtest {run.run_id}"
    return write_html(report_path(settings, run.run_id), result.stats, result.closes, title, meta)


def attach_report(settings: Settings, run: BacktestRun) -> str:
    """Log the report as an artifact of the tested version's training run, and tag the
    version with the run's headline figures."""
    assert run.report_path is not None
    registry = bootstrap.model_registry(settings)
    s = run.summary
    tags = {
        f"backtest.{run.run_id}": (
            f"{run.start:%F}..{run.end:%F} {','.join(run.symbols)} {run.timeframe}: "
            f"return {_pct(s.get('total_return'))}, max drawdown {_pct(s.get('max_drawdown'))}, "
            f"sharpe {s.get('sharpe')}"
        )
    }
    return registry.attach(
        run.model_name, run.model_version, f"backtests/{run.run_id}", [Path(run.report_path)], tags
    )


def _pct(value: object) -> str:
    return f"{value:+.2%}" if isinstance(value, float) else "n/a"
