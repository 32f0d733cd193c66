"""Read models: what the ledger hands out about the past. Frozen, plain, no ORM rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from core.agents.base import Vote
from core.decision import Decision
from core.features.book_specs import BOOK_FEATURE_NAMES
from core.latency import DECISION_LATENCY_BOUNDS, PREDICT_BOUNDS, LatencyHistogram
from core.orders import Fill, Order
from core.portfolio import Position
from core.risk.limits import Denial
from core.risk.state import SafetyFlags
from core.types import Action, ClientOrderId, DecisionId, Symbol


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One recorded decision, as stored: what was seen, voted, decided and why."""

    decision_id: DecisionId
    account: str
    symbol: Symbol
    timeframe: str
    candle_time: datetime
    price: Decimal
    feature_set_version: str
    model_name: str
    model_version: str
    probability: float
    votes: tuple[Vote, ...]
    order_book_features: Mapping[str, float] | None
    action: Action
    score: float
    consensus_reason: str
    risk_approved: bool | None
    denials: tuple[Denial, ...]
    client_order_id: ClientOrderId | None
    decided_at: datetime
    contributions: Mapping[str, float] = field(default_factory=dict)
    regime: str = ""
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, decision: Decision) -> DecisionRecord:
        """A decision as the ledger hands it back, without the round trip (a replay compares
        what it recomputed with what was recorded)."""
        inp, consensus, verdict = decision.input, decision.consensus, decision.verdict
        books = {k: float(inp.features[k]) for k in BOOK_FEATURE_NAMES if k in inp.features}
        return cls(
            decision_id=decision.decision_id,
            account=inp.account,
            symbol=inp.symbol,
            timeframe=inp.timeframe,
            candle_time=inp.candle_time,
            price=inp.price,
            feature_set_version=inp.feature_set_version,
            model_name=inp.model_name,
            model_version=inp.model_version,
            probability=float(inp.model_probability),
            votes=decision.votes,
            order_book_features=books or None,
            action=consensus.action,
            score=consensus.score,
            consensus_reason=consensus.reason,
            risk_approved=None if verdict is None else verdict.approved,
            denials=() if verdict is None else verdict.denials,
            client_order_id=None if decision.order is None else decision.order.client_order_id,
            decided_at=decision.decided_at,
            contributions=dict(consensus.contributions),
            regime=consensus.regime,
            provenance=dict(decision.provenance),
        )


@dataclass(frozen=True, slots=True)
class CandleGapRecord:
    first_missing: datetime
    last_missing: datetime
    missing: int
    policy: str
    source: str


@dataclass(frozen=True, slots=True)
class ControlState:
    """A safety control now: active or not, why, since when, until when (a cooldown)."""

    control: str
    active: bool
    reason: str | None
    changed_at: datetime
    until: datetime | None


@dataclass(frozen=True, slots=True)
class KillSwitchState:
    active: bool
    reason: str | None
    changed_at: datetime | None


@dataclass(frozen=True, slots=True)
class SafetyEvent:
    """One step a safety control took, with what it saw and did."""

    at: datetime
    control: str
    step: str
    detail: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class SafetyRequest:
    """A signed safety request (kill switch, breaker reset) as it was answered."""

    at: datetime
    action: str | None
    accepted: bool
    reason: str | None
    rejection: str | None
    client: str | None


@dataclass(frozen=True, slots=True)
class ModelInUse:
    """The model the newest decision was made with (the decision flow loads the champion)."""

    name: str
    version: str
    feature_set_version: str
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class SafetyOverview:
    """Everything the safety status shows, read in one go: controls, the kill switch and its
    steps, the accepted (signed) requests, and how many were refused, not who sent them."""

    flags: SafetyFlags
    kill_switch: KillSwitchState
    breaker: ControlState | None
    kill_switch_steps: tuple[SafetyEvent, ...]
    accepted: tuple[SafetyRequest, ...]
    refusals_last_minute: int
    refusals_last_hour: int
    refusals_last_day: int


@dataclass(frozen=True, slots=True)
class HealthOverview:
    flags: SafetyFlags
    kill_switch: KillSwitchState
    model: ModelInUse | None


@dataclass(frozen=True, slots=True)
class TradingCounts:
    """What /metrics reports from the ledger at scrape time: the flows write it in their own
    processes, so counting it where it is stored is what reaches Prometheus whole."""

    flags: SafetyFlags
    kill_switch: KillSwitchState
    orders: Mapping[str, int]  # by status
    decisions: Mapping[str, int]  # by action
    denials: Mapping[str, int]  # risk-gate denials by code
    fills: int
    positions: Mapping[str, float]  # quantity held by symbol
    llm_calls: Mapping[tuple[str, str, str], int]  # (agent, model, outcome) -> calls
    llm_tokens: Mapping[tuple[str, str, str], int]  # (agent, model, "input"|"output")
    llm_cost: Mapping[tuple[str, str], float]  # (agent, model) -> cost
    # Candle close -> decided_at of every decision; the model's seconds per prediction as the
    # decision flow recorded them (decisions from before timings were kept are not in it).
    decision_latency: LatencyHistogram = field(
        default_factory=lambda: LatencyHistogram.empty(DECISION_LATENCY_BOUNDS)
    )
    predict_seconds: LatencyHistogram = field(
        default_factory=lambda: LatencyHistogram.empty(PREDICT_BOUNDS)
    )


@dataclass(frozen=True, slots=True)
class StoredOrder:
    """An order with the ledger's bookkeeping of it."""

    order: Order
    broker: str
    updated_at: datetime
    submit_attempts: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class AccountRecords:
    """Everything one account recorded: what a backtest hands to the SQL ledger in one go."""

    account: str
    starting_cash: Decimal
    cash: Decimal
    opened_at: datetime
    decisions: Sequence[tuple[Decision, str]]  # with the broker it was decided for
    orders: Sequence[StoredOrder]
    fills: Sequence[tuple[Fill, Decimal]]  # with its realised P&L
    positions: Mapping[Symbol, Position]


@dataclass(frozen=True, slots=True)
class BacktestRun:
    """One backtest: what was tested, on what, and how it did. Its decisions, orders and fills
    live in the ledger under `account`, which no paper or live run uses."""

    run_id: str
    account: str
    created_at: datetime
    symbols: tuple[str, ...]
    timeframe: str
    start: datetime
    end: datetime
    model_name: str
    model_version: str
    params: Mapping[str, str]
    summary: Mapping[str, float | str | None]
    report_path: str | None = None
    # The run's account is not a trading account (a ledger holds one: its safety controls are
    # the ledger's), so its money is kept here, not in `accounts`.
    starting_cash: Decimal = Decimal(0)
    cash: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class DriftCheck:
    """One drift check of a model version: its windows, what drifted, the AUC then and now,
    and whether it started a retraining (services/drift.py explains the figures)."""

    checked_at: datetime
    model_name: str
    model_version: str
    reference_start: datetime
    reference_end: datetime
    current_start: datetime
    current_end: datetime
    reference_rows: int
    current_rows: int
    share_drifted: float  # of the compared features
    dataset_drift: bool  # share_drifted >= the configured threshold
    prediction_drift: bool
    prediction_score: float | None  # the prediction column's drift score
    drifted_columns: tuple[str, ...]  # features only, by name
    matured_rows: int  # current rows whose label horizon has passed
    auc_current: float | None
    auc_reference: float | None
    retrain_triggered: bool = False
    flow_run_id: str | None = None
    report_path: str | None = None
    # The label's base rate on the matured current rows and on the reference rows, and
    # whether it moved beyond sampling noise; None under the minimum of matured labels.
    target_rate_current: float | None = None
    target_rate_reference: float | None = None
    target_drift: bool | None = None
    id: int | None = None  # the ledger's, once stored
