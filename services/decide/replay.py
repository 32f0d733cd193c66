"""Replay: the decision step over a window of history, on the simulated exchange only.

For each candle time, oldest first: working orders fill at this candle's open (the first price
after the earlier decision), the breaker looks at the account, then every symbol is decided at
this candle's close and approved orders are sent. Plain function calls: no task inside a task.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from core.agents.base import Agent
from core.candles.timeframe import timeframe_delta
from core.clock import FixedClock
from core.decision import Decision
from core.errors import FatalError
from core.ports import Ledger, Model, Notifier, SimulatedExchange
from core.types import DecisionId, Symbol
from services import progress
from services.circuit_breaker import CircuitBreaker
from services.decide.batch import DecisionBatch, prepare_batch
from services.decide.config import DecisionConfig
from services.decide.step import decide_at
from services.execution import settle_simulated, submit_order
from services.risk_snapshot import RiskSnapshots


@dataclass
class DecisionRunReport:
    candle_times: list[datetime] = field(default_factory=list)
    decided: Counter[str] = field(default_factory=Counter)
    skipped_existing: int = 0
    denied: Counter[str] = field(default_factory=Counter)
    orders: int = 0
    fills: int = 0
    broker: str = ""

    def count(self, decision: Decision) -> None:
        self.decided[decision.consensus.action.value] += 1
        if decision.verdict is not None and not decision.verdict.approved:
            for denial in decision.verdict.denials:
                self.denied[denial.code.value] += 1


@dataclass
class DecisionLoop:
    """What both loops share: the ledger, the agents, the risk snapshots and the breaker."""

    ledger: Ledger
    agents: Sequence[Agent]
    cfg: DecisionConfig
    alerts: Notifier

    def __post_init__(self) -> None:
        cfg = self.cfg
        self.snapshots = RiskSnapshots(self.ledger, cfg.account, cfg.exchange, cfg.timeframe)
        self.breaker = CircuitBreaker(self.ledger, self.snapshots, cfg.breaker, self.alerts)

    def already_decided(self, batch: DecisionBatch) -> set[DecisionId]:
        if not batch.times:
            return set()
        first = batch.times[0].to_pydatetime()
        return self.ledger.orders.decided_ids(self.cfg.account, self.cfg.timeframe, first)

    def decide(
        self,
        batch: DecisionBatch,
        t: pd.Timestamp,
        now: datetime,
        broker: str,
        already: Collection[DecisionId],
    ) -> tuple[list[Decision], int]:
        """Breaker, then the step at `t`; every decision recorded. Returns those recorded and
        how many were decided by an earlier run."""
        prices = batch.prices_at(t)
        self.breaker.check(prices, now)
        step = decide_at(
            batch, t, self.snapshots.snapshot(prices, now), now, self.cfg, self.agents, already
        )
        recorded = [d for d in step.decisions if self.ledger.orders.record_decision(d, broker)]
        return recorded, step.skipped + len(step.decisions) - len(recorded)


def replay(
    ledger: Ledger,
    exchange: SimulatedExchange,
    model: Model,
    agents: Sequence[Agent],
    cfg: DecisionConfig,
    candles: int,
    alerts: Notifier,
) -> DecisionRunReport:
    """Decide the newest `candles` closed candles as if each had just closed."""
    batch = prepare_batch(ledger, model, cfg, candles)
    loop = DecisionLoop(ledger, agents, cfg, alerts)
    step = timeframe_delta(cfg.timeframe)
    report = DecisionRunReport(broker=exchange.name)
    already = loop.already_decided(batch)
    for t in batch.times:
        opened = t.to_pydatetime()
        report.fills += settle_all(ledger, exchange, batch, t, cfg)
        now = opened + step  # the candle just closed
        decisions, skipped = loop.decide(batch, t, now, exchange.name, already)
        report.skipped_existing += skipped
        for decision in decisions:
            report.count(decision)
            if decision.order is not None:
                submit_order(ledger, exchange, decision.order.client_order_id, FixedClock(now))
                report.orders += 1
        report.candle_times.append(opened)
        progress.candle(opened)
    return report


class NotEnoughCandles(FatalError, LookupError):
    pass


def replay_window(ledger: Ledger, cfg: DecisionConfig, candles: int) -> tuple[datetime, datetime]:
    """(first replayed candle, last candle training may see): the model never saw the replay."""
    starts = []
    for symbol in cfg.symbols:
        frame = ledger.candles.load(cfg.exchange, symbol, cfg.timeframe, limit=candles + 1)
        if len(frame) <= candles:
            raise NotEnoughCandles(
                f"{symbol}: {len(frame)} candles stored, a replay of {candles} needs more"
            )
        starts.append((frame["open_time"].iloc[1], frame["open_time"].iloc[0]))
    first, before = min(starts)
    return first.to_pydatetime(), before.to_pydatetime()


def settle_all(
    ledger: Ledger,
    exchange: SimulatedExchange,
    batch: DecisionBatch,
    t: pd.Timestamp,
    cfg: DecisionConfig,
) -> int:
    """Working simulated orders of every symbol meet the candle opening at `t`."""
    fills = 0
    for symbol in cfg.symbols:
        bar = batch.bar(symbol, t)
        if bar is not None:
            clock = FixedClock(bar.open_time)
            fills += len(
                settle_simulated(ledger, exchange, cfg.account, Symbol(symbol), bar, clock)
            )
    return fills
