"""What the live loop and the replay share: the report they fill, and the loop step around the
pure decision step (the breaker, the ledger's risk snapshot, recording), plus settling the
simulated exchange on a candle."""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from core.agents.brief import PastDecision
from core.agents.panel import Panel
from core.clock import FixedClock
from core.decision import Decision
from core.holds import HoldDecider, HoldSettings, candle_only
from core.ports import Notifier, SimulatedExchange, TradingLedger
from core.risk.limits import RiskState
from core.risk.state import TradingState
from core.types import DecisionId, Symbol
from services.circuit_breaker import CircuitBreaker
from services.correlation import bound
from services.decide.batch import DecisionBatch
from services.decide.config import DecisionConfig
from services.decide.step import decide_at
from services.execution import settle_simulated
from services.risk_snapshot import RiskSnapshots

log = logging.getLogger("tradeflow.decisions")


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
    """What both loops share: the ledger, the panel, the risk snapshots, the breaker, and the
    last decisions of each symbol (an LLM agent's brief cites them)."""

    ledger: TradingLedger
    panel: Panel
    cfg: DecisionConfig
    alerts: Notifier
    # Live: the wall clock, and each decision keeps what it cost. A replay or a backtest keeps
    # none: decided twice, it records the same decisions.
    timer: Callable[[], float] | None = None
    # A replay with a panel that votes on the candle alone sets flat symbols' holds apart and
    # has them decided in bulk (core.holds), HOLDS_CHUNK at a time. They are not in `recent`:
    # only an LLM agent's brief reads that, and an LLM panel decides every candle here.
    holds_apart: bool = False

    def __post_init__(self) -> None:
        cfg = self.cfg
        self.snapshots = RiskSnapshots(self.ledger, cfg.account, cfg.exchange, cfg.timeframe)
        self.breaker = CircuitBreaker(self.ledger, self.snapshots, cfg.breaker, self.alerts)
        self.recent: dict[str, deque[PastDecision]] | None = None
        self.holds: list[tuple[int, int]] = []  # set apart, not yet handed to the ledger
        # The account's fill count when the last step left it quiet (_quiet_after), else None.
        self.quiet: int | None = None

    def _recent(self, before: datetime) -> dict[str, deque[PastDecision]]:
        """Seeded from the ledger once, then kept as this loop decides."""
        if self.recent is None:
            cfg, n = self.cfg, self.cfg.recent_decisions
            self.recent = {
                s: deque(
                    (
                        PastDecision(r.candle_time, r.action.value, r.price)
                        for r in self.ledger.orders.recent_decisions(
                            cfg.account, s, cfg.timeframe, before, n
                        )
                    ),
                    maxlen=n,
                )
                for s in cfg.symbols
            }
        return self.recent

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
        if self._quiet_holds(batch, t, already):
            self._hand_over_holds(batch, broker)
            return [], 0
        prices = batch.prices_at(t)
        state = self.snapshots.snapshot(prices, now)
        status = self.breaker.check(prices, now, state)
        if status.changed:
            state = self.snapshots.snapshot(prices, now)  # it tripped or cleared: halts differ
        # Only an LLM agent's brief cites the symbol's last decisions: a candle-only panel's
        # loop neither reads them (a query per symbol) nor keeps them.
        recent = None if candle_only(self.panel) else self._recent(t.to_pydatetime())
        holds = self.holds if self.holds_apart else None
        step = decide_at(
            batch, t, state, now, self.cfg, self.panel, already, recent, self.timer, holds
        )
        self.quiet = self._quiet_after(state, status.tripped, step.decisions)
        for d in step.decisions if recent is not None else ():
            inp = d.input
            recent[inp.symbol].append(
                PastDecision(inp.candle_time, d.consensus.action.value, inp.price)
            )
        recorded = [d for d in step.decisions if _record(self.ledger, d, broker)]
        self._hand_over_holds(batch, broker)
        return recorded, step.skipped + len(step.decisions) - len(recorded)

    def _quiet_after(
        self, state: RiskState, tripped: bool, decisions: list[Decision]
    ) -> int | None:
        """The fill count, when this step left the account quiet: holds set apart, nothing
        held nor open, trading active, the breaker clear, and no order made."""
        if (
            not self.holds_apart
            or tripped
            or state.trading_state is not TradingState.ACTIVE
            or state.open_orders
            or any(state.positions.values())
            or any(d.order is not None for d in decisions)
        ):
            return None
        return self.ledger.fills.count(self.cfg.account)

    def _quiet_holds(
        self, batch: DecisionBatch, t: pd.Timestamp, already: Collection[DecisionId]
    ) -> bool:
        """Set every symbol's candle at `t` apart as a hold, without the snapshot, the breaker
        or the step, while the account stays as quiet as the last step left it (no fill since,
        nothing open): a hold reads no risk state, and a flat account's equity is its cash, so
        no breaker reading can cross a limit the last one did not (today's loss only resets
        to nothing at midnight). False, with nothing set apart, when a symbol's candle is not
        a flat hold (it is decided, and the whole candle goes the step's way)."""
        cfg = self.cfg
        if self.quiet is None or already:
            return False
        if self.ledger.fills.count(cfg.account) != self.quiet or self.ledger.orders.open(
            cfg.account
        ):
            self.quiet = None
            return False
        marks = []
        for k, symbol in enumerate(cfg.symbols):
            at = batch.flat_hold_row(symbol, t, cfg.consensus)
            if at is not None:
                marks.append((k, at))
            elif batch.read_at(symbol, t) is not None:
                return False
        self.holds.extend(marks)
        return True

    def _hand_over_holds(self, batch: DecisionBatch, broker: str) -> None:
        if len(self.holds) >= HOLDS_CHUNK:
            self.record_holds(batch, broker)

    def record_holds(self, batch: DecisionBatch, broker: str) -> None:
        """Hand the holds set apart to the ledger, with what decides them."""
        if not self.holds:
            return
        rows = batch.hold_rows(self.cfg, self.holds)
        self.holds = []
        decider = HoldDecider(hold_settings(batch, self.cfg), self.panel)
        self.ledger.orders.record_holds(rows, decider, broker)


HOLDS_CHUNK = 5_000  # holds per hand-over: a copy of their features, about 4 MB


def hold_settings(batch: DecisionBatch, cfg: DecisionConfig) -> HoldSettings:
    return HoldSettings(
        model_name=batch.model_name,
        model_version=batch.model_version,
        feature_set_version=batch.feature_set_version,
        tradeable=batch.tradeable,
        quality=batch.quality,
        consensus=cfg.consensus,
        sizing=cfg.sizing,
        limits=cfg.limits,
    )


def _record(ledger: TradingLedger, decision: Decision, broker: str) -> bool:
    """Record under the decision's correlation id: what recording writes (its events) and
    logs carries it. False when an earlier run recorded it."""
    with bound(correlation_id=decision.decision_id):
        if not ledger.orders.record_decision(decision, broker):
            return False
        log.debug("decision %s recorded: %s", decision.decision_id, decision.consensus.action.value)
        return True


def settle_all(
    ledger: TradingLedger,
    exchange: SimulatedExchange,
    batch: DecisionBatch,
    t: pd.Timestamp,
    cfg: DecisionConfig,
) -> int:
    """Working simulated orders of every symbol meet the candle opening at `t`. A symbol with
    nothing working at the exchange nor open in the ledger has nothing to settle."""
    fills = 0
    for symbol in cfg.symbols:
        if not exchange.working(Symbol(symbol)) and not ledger.orders.open(cfg.account, symbol):
            continue
        bar = batch.bar(symbol, t)
        if bar is not None:
            clock = FixedClock(bar.open_time)
            fills += len(
                settle_simulated(ledger, exchange, cfg.account, Symbol(symbol), bar, clock)
            )
    return fills
