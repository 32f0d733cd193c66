"""Live: decide every closed candle since the last one decided (at most `catch_up_candles`),
at the wall clock's time. Orders are recorded and returned, not sent: the flow sends each as its
own task (retried, looked up before any resend). A candle that closed longer ago than the limit
is still decided and recorded, with the gate's STALE_CANDLE denial, and an alert says so."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from core.agents.panel import Panel
from core.candles.timeframe import timeframe_delta
from core.clock import Clock
from core.decision import Decision
from core.ports import Model, Notifier, SimulatedExchange, TradingLedger
from core.types import ClientOrderId
from services.collector import rare_collections
from services.correlation import bound
from services.decide.batch import DecisionBatch, prepare_batch
from services.decide.config import DecisionConfig
from services.decide.loop import DecisionLoop, DecisionRunReport, settle_all
from services.execution import unsent_orders

log = logging.getLogger("tradeflow.decisions")


@dataclass
class LiveReport(DecisionRunReport):
    to_send: list[ClientOrderId] = field(default_factory=list)  # recorded, not yet sent
    stale: list[datetime] = field(default_factory=list)  # candles decided too late to trade
    newest_close: datetime | None = None  # close of the newest candle stored


@rare_collections(collect_first=False)  # no full collection of the start-up mid-decision
def decide_live(
    ledger: TradingLedger,
    broker_name: str,
    market: SimulatedExchange | None,
    model: Model,
    panel: Panel,
    cfg: DecisionConfig,
    clock: Clock,
    alerts: Notifier,
) -> LiveReport:
    """`market` is the paper exchange when trading on paper: its working orders meet each new
    candle before it is decided (a real exchange fills by itself; reconciliation brings its
    fills in)."""
    last = _last_decided(ledger, cfg)
    batch = prepare_batch(ledger, model, cfg, cfg.catch_up_candles, after=last)
    loop = DecisionLoop(ledger, panel, cfg, alerts, timer=time.perf_counter)  # timings kept
    already = loop.already_decided(batch)
    report = LiveReport(broker=broker_name)
    step = timeframe_delta(cfg.timeframe)
    for t in batch.times:
        if market is not None:
            report.fills += settle_all(ledger, market, batch, t, cfg)
        now = clock.now()
        decisions, skipped = loop.decide(batch, t, now, broker_name, already)
        report.skipped_existing += skipped
        for decision in decisions:
            report.count(decision)
            report.orders += decision.order is not None
            _log_decision(decision)
        opened = t.to_pydatetime()
        report.candle_times.append(opened)
        if cfg.limits.too_old(now - (opened + step)):
            report.stale.append(opened)  # the gate denied any order on it (STALE_CANDLE)
    # Every order recorded and not yet sent: this run's, and any an earlier run left unsent.
    report.to_send = unsent_orders(ledger, cfg.account)
    report.newest_close = _newest_close(batch, cfg)
    _alert_if_stale(report, cfg, clock.now(), alerts)
    return report


def _log_decision(decision: Decision) -> None:
    """One line per live decision, under its correlation id (a replay's or a backtest's
    hundreds of thousands are not logged: their run's summary is)."""
    order, verdict = decision.order, decision.verdict
    outcome = f"order {order.client_order_id}" if order is not None else "no order"
    if verdict is not None and not verdict.approved:
        outcome = "denied " + ", ".join(d.code.value for d in verdict.denials)
    with bound(correlation_id=decision.decision_id):
        log.info(
            "decided %s %s: %s, %s", decision.input.symbol,
            f"{decision.input.candle_time:%F %H:%M}", decision.consensus.action.value, outcome,
            extra=None if order is None else {"client_order_id": order.client_order_id},
        )  # fmt: skip


def _last_decided(ledger: TradingLedger, cfg: DecisionConfig) -> datetime | None:
    """The oldest of the symbols' newest decided candles: every symbol is caught up from it."""
    last = [ledger.orders.last_decided(cfg.account, s, cfg.timeframe) for s in cfg.symbols]
    return None if any(t is None for t in last) else min(t for t in last if t is not None)


def _newest_close(batch: DecisionBatch, cfg: DecisionConfig) -> datetime | None:
    """The newest candle the batch loaded: the newest stored when the run began (a query per
    symbol again cost a live run more than its model call)."""
    opens = [f.index[-1] for f in batch.candles.values() if len(f)]
    return max(opens).to_pydatetime() + timeframe_delta(cfg.timeframe) if opens else None


def _alert_if_stale(
    report: LiveReport, cfg: DecisionConfig, now: datetime, alerts: Notifier
) -> None:
    limit = cfg.limits.max_candle_age
    if limit is None:
        return
    if report.stale:
        alerts.send(
            "tradeflow decided stale candles: no orders",
            f"{len(report.stale)} candle(s) from {min(report.stale):%F %H:%M} to "
            f"{max(report.stale):%F %H:%M} UTC closed more than {limit} before they were "
            "decided; recorded with STALE_CANDLE, nothing traded",
        )
    newest = report.newest_close
    if newest is not None and cfg.limits.too_old(now - newest):
        alerts.send(
            "tradeflow has no fresh candle",
            f"the newest stored {cfg.timeframe} candle closed at {newest:%F %H:%M} UTC, "
            f"{now - newest} ago (limit {limit}): is ingestion running?",
        )
