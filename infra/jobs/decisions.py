"""The decision loop: the same code decides one live candle or replays a window of history.

For each candle time, oldest first: working paper orders fill at this candle's open (the first
price after the earlier decision), then every symbol is decided at this candle's close.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from core.agents.base import Agent
from core.candles.timeframe import timeframe_delta
from core.clock import Clock, FixedClock
from core.consensus import ConsensusConfig
from core.decision import DecisionInput, Sizing, decide
from core.features.build import INCREMENTAL_WINDOW, build_features
from core.features.order_book import book_features_at_closes
from core.features.registry import FEATURE_NAMES
from core.orders import Order, decision_id_for
from core.ports import Broker
from core.risk.breaker import BreakerConfig
from core.risk.limits import RiskLimits
from core.types import ClientOrderId, Symbol, to_decimal
from infra.alerts import Alerts
from infra.brokers.simulated import Bar, SimulatedBroker
from infra.jobs.circuit_breaker import check_circuit_breaker
from infra.jobs.execution import settle_simulated
from infra.jobs.risk_snapshot import RiskSnapshots
from infra.ledger.repository import Ledger
from registry.mlflow_registry import ServedModel

# Warm-up plus slack: features at the first decided candle are fully formed.
FEATURE_WINDOW = INCREMENTAL_WINDOW


@dataclass(frozen=True, slots=True)
class DecisionConfig:
    account: str
    exchange: str
    symbols: Sequence[str]
    timeframe: str
    reference_symbol: str
    consensus: ConsensusConfig
    sizing: Sizing
    limits: RiskLimits
    breaker: BreakerConfig = field(default_factory=BreakerConfig)


@dataclass
class DecisionRunReport:
    candle_times: list[datetime] = field(default_factory=list)
    decided: Counter[str] = field(default_factory=Counter)
    skipped_existing: int = 0
    denied: Counter[str] = field(default_factory=Counter)
    orders: int = 0
    fills: int = 0


SubmitFn = Callable[[ClientOrderId], Order]


def run_decisions(
    ledger: Ledger,
    broker: Broker,
    model: ServedModel,
    agents: Sequence[Agent],
    cfg: DecisionConfig,
    candles: int,
    submit: SubmitFn,
    clock: Clock | None = None,
    on_candle: Callable[[datetime], None] | None = None,
    alerts: Alerts | None = None,
) -> DecisionRunReport:
    """Decide the newest `candles` closed candles. `clock=None` replays: `now` is each close."""
    step = timeframe_delta(cfg.timeframe)
    frames = {
        s: ledger.load_candles(cfg.exchange, s, cfg.timeframe, limit=candles + FEATURE_WINDOW)
        for s in cfg.symbols
    }
    missing = [s for s, f in frames.items() if f.empty]
    if missing:
        raise LookupError(
            f"no candles stored for {missing} on {cfg.exchange} {cfg.timeframe}: "
            "run the ingest flow first"
        )
    candle_rows = {s: f.set_index("open_time") for s, f in frames.items()}
    reference = frames[cfg.reference_symbol]
    features = {s: build_features(f, reference) for s, f in frames.items()}
    probabilities = {s: _predict(model, features[s]) for s in cfg.symbols}
    times = sorted(set().union(*(set(f.index[-candles:]) for f in candle_rows.values())))
    books = {s: _book_features(ledger, cfg, s, features[s].index[-candles:]) for s in cfg.symbols}
    report = DecisionRunReport()
    snapshots = RiskSnapshots(ledger, cfg.account, cfg.exchange, cfg.timeframe)
    alerts = alerts or Alerts()
    for t in times:
        ts = t.to_pydatetime()
        for symbol in cfg.symbols:
            rows = candle_rows[symbol]
            # Only the simulated exchange trades on our candles; a real one trades by itself and
            # its fills reach the ledger through reconciliation at the start of each run.
            if t in rows.index and isinstance(broker, SimulatedBroker):
                fills = settle_simulated(
                    ledger,
                    broker,
                    cfg.account,
                    Symbol(symbol),
                    _bar(ts, rows.loc[t]),
                    clock or FixedClock(ts),
                )
                report.fills += len(fills)
        prices = {
            s: to_decimal(float(candle_rows[s]["close"].asof(t)))
            for s in cfg.symbols
            if candle_rows[s].index[0] <= t
        }
        decided_at = ts + step if clock is None else clock.now()
        check_circuit_breaker(ledger, snapshots, prices, decided_at, cfg.breaker, alerts)
        for symbol in cfg.symbols:
            if t not in candle_rows[symbol].index:
                continue
            decision_id = decision_id_for(cfg.account, symbol, cfg.timeframe, ts)
            if ledger.has_decision(decision_id):
                report.skipped_existing += 1
                continue
            row = features[symbol].loc[t]
            probability = probabilities[symbol].get(t, np.nan)
            if row.isna().any() or np.isnan(probability):
                continue  # warm-up: not enough history for every feature yet
            now = ts + step if clock is None else clock.now()
            decision = decide(
                DecisionInput(
                    account=cfg.account,
                    symbol=Symbol(symbol),
                    timeframe=cfg.timeframe,
                    candle_time=ts,
                    price=prices[symbol],
                    features=row.to_dict() | books[symbol].get(t, {}),
                    model_probability=float(probability),
                    model_name=model.name,
                    model_version=model.version,
                    feature_set_version=model.feature_set_version,
                ),
                agents,
                cfg.consensus,
                cfg.sizing,
                snapshots.snapshot(prices, now),
                cfg.limits,
                now,
            )
            ledger.record_decision(decision, broker.name)
            report.decided[decision.consensus.action.value] += 1
            if decision.verdict is not None and not decision.verdict.approved:
                for reason in decision.verdict.reasons:
                    report.denied[reason.split(":", 1)[0]] += 1
            if decision.order is not None:
                submit(decision.order.client_order_id)
                report.orders += 1
        report.candle_times.append(ts)
        if on_candle is not None:
            on_candle(ts)
    return report


def _bar(open_time: datetime, row: pd.Series) -> Bar:
    return Bar(
        open_time,
        *(to_decimal(float(row[c])) for c in ("open", "high", "low", "close", "volume")),
    )


def _book_features(
    ledger: Ledger,
    cfg: DecisionConfig,
    symbol: str,
    opens: pd.DatetimeIndex,  # type: ignore[type-arg]
) -> dict[pd.Timestamp, dict[str, float]]:
    """Order-book features at each candle close, where a live snapshot was stored no more than
    one candle before it; empty when the source never stored books (files, replays)."""
    if len(opens) == 0:
        return {}
    step = timeframe_delta(cfg.timeframe)
    first, last = opens[0].to_pydatetime(), opens[-1].to_pydatetime() + step
    snapshots = ledger.microstructure.order_books(cfg.exchange, symbol, first, last)
    if not snapshots:
        return {}
    frame = book_features_at_closes(snapshots, opens, step, max_age=step).dropna()
    return {t: row.to_dict() for t, row in frame.iterrows()}


def _predict(model: ServedModel, features: pd.DataFrame) -> pd.Series:
    ready = features.dropna()
    if ready.empty:
        return pd.Series(dtype="float64")
    return pd.Series(model.predict(ready.loc[:, list(FEATURE_NAMES)]), index=ready.index)
