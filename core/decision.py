"""One decision for one symbol at one candle close: the panel's votes -> consensus -> sizing ->
risk gate.

Pure: the caller brings the features, the model's probability, the panel's deliberation, the
risk state and the time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from functools import partial

from core.agents.base import AgentContext, Vote
from core.agents.brief import Brief, PastDecision, regime_of
from core.agents.calls import AgentCall
from core.agents.panel import Deliberation
from core.candles.timeframe import timeframe_delta
from core.consensus import Consensus, ConsensusConfig, ModelSignal, combine
from core.models.policy import FLAT, Holding
from core.orders import Order, client_order_id_for, decision_id_for
from core.risk.limits import (
    ProposedOrder,
    RiskLimits,
    RiskState,
    RiskVerdict,
    available_to_sell,
    evaluate,
    normalise,
)
from core.types import Action, DecisionId, Side, Symbol

# Plain names: an enum member read is a descriptor call, and `decide` runs at every decision.
_SELL, _HOLD, _NO_TRADE = Action.SELL, Action.HOLD, Action.NO_TRADE


@dataclass(frozen=True, slots=True)
class DecisionInput:
    account: str
    symbol: Symbol
    timeframe: str
    candle_time: datetime  # open time of the candle that just closed
    price: Decimal  # its close: the last price known at decision time
    features: Mapping[str, float]
    model_probability: float
    model_name: str
    model_version: str
    feature_set_version: str
    # What the decision policy reads: the expected net log return of entering now, and whether
    # the model earned the right to trade out of fold (else it abstains). No defaults: an input
    # that forgot them would never trade, without a word.
    model_edge: float
    model_tradeable: bool
    # How the model did out of sample (AUC, Brier, its policy's entries...): the brief's.
    model_quality: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sizing:
    order_notional: Decimal  # quote currency per BUY


@dataclass(frozen=True, slots=True)
class Decision:
    decision_id: DecisionId
    input: DecisionInput
    votes: tuple[Vote, ...]
    consensus: Consensus
    proposed: ProposedOrder | None
    verdict: RiskVerdict | None
    order: Order | None
    decided_at: datetime
    calls: tuple[AgentCall, ...] = ()  # every LLM call behind the votes (none offline)
    # What replaying this decision bit for bit needs (services.decide.provenance).
    provenance: Mapping[str, object] = field(default_factory=dict)


def agent_context(
    inp: DecisionInput,
    state: RiskState,
    horizon: int,
    recent: Sequence[PastDecision] = (),
) -> AgentContext:
    """What the agents see of this decision: the features and, for an LLM, the brief (built
    when first read)."""
    return AgentContext(
        inp.symbol,
        inp.features,
        inp.model_probability,
        partial(brief_of, inp, state, horizon, tuple(recent)),
    )


def brief_of(
    inp: DecisionInput, state: RiskState, horizon: int, recent: Sequence[PastDecision]
) -> Brief:
    holding = holding_of(inp, state, horizon)
    step = timeframe_delta(inp.timeframe)
    return Brief(
        symbol=inp.symbol,
        timeframe=inp.timeframe,
        features=inp.features,
        model_probability=inp.model_probability,
        model_edge=inp.model_edge,
        model_significant=inp.model_tradeable,
        model_quality=inp.model_quality,
        held=holding.fraction > 0,
        held_candles=holding.held_for if holding.fraction > 0 else 0,
        open_orders=int(state.open_buys.get(inp.symbol, 0) > 0)
        + int(state.open_sells.get(inp.symbol, 0) > 0),
        price=inp.price,
        recent=tuple(
            (int((inp.candle_time - d.candle_time) / step), d)
            for d in sorted(recent, key=lambda d: d.candle_time, reverse=True)
        ),
    )


def size_order(
    action: Action,
    inp: DecisionInput,
    state: RiskState,
    limits: RiskLimits,
    sizing: Sizing,
    fraction: Decimal = Decimal(1),
) -> ProposedOrder:
    """A BUY spends `fraction` of the configured notional (the policy sizes by its edge); a
    SELL closes what is held and not already being sold. Amounts are rounded down to the
    exchange's step."""
    rules = limits.rules_for(inp.symbol)
    if action is Action.BUY:
        qty = sizing.order_notional * fraction / inp.price
        return normalise(ProposedOrder(inp.symbol, Side.BUY, qty, inp.price), rules)
    free = available_to_sell(inp.symbol, state)
    return normalise(ProposedOrder(inp.symbol, Side.SELL, free, inp.price), rules)


def holding_of(inp: DecisionInput, state: RiskState, horizon: int) -> Holding:
    """The policy's view of this symbol's position: held or not, and for how many candles
    (counted from its entry; a holding of unknown age counts as past the horizon)."""
    if state.committed(inp.symbol) <= 0:
        return FLAT
    entered = state.entered_at.get(inp.symbol)
    if entered is None:
        return Holding(1.0, horizon)
    step = timeframe_delta(inp.timeframe)
    held = int((inp.candle_time + step - entered) / step) - 1
    return Holding(1.0, max(0, held))


def decide(
    inp: DecisionInput,
    deliberation: Deliberation,
    consensus_config: ConsensusConfig,
    sizing: Sizing,
    risk_state: RiskState,
    limits: RiskLimits,
    now: datetime,
    decision_id: DecisionId | None = None,  # the caller's, when it built it already
) -> Decision:
    if decision_id is None:
        decision_id = decision_id_for(inp.account, inp.symbol, inp.timeframe, inp.candle_time)
    votes, calls = deliberation.votes, deliberation.calls
    signal = ModelSignal(inp.model_probability, inp.model_edge, inp.model_tradeable)
    holding = holding_of(inp, risk_state, consensus_config.policy.horizon)
    consensus = combine(signal, deliberation, holding, consensus_config, regime_of(inp.features))
    action = consensus.action
    if action is _HOLD or action is _NO_TRADE:  # most decisions: nothing to size nor gate
        return Decision(decision_id, inp, votes, consensus, None, None, None, now, calls)
    if action is _SELL and available_to_sell(inp.symbol, risk_state) <= 0:
        # The entry is still filling (or already being sold): wait for it, as a backtest that
        # filled it at once would simply sell it now.
        consensus = replace(consensus, action=_HOLD, reason="exit waits: " + consensus.reason)
        return Decision(decision_id, inp, votes, consensus, None, None, None, now, calls)
    fraction = Decimal(str(round(consensus.fraction, 4)))
    proposed = size_order(consensus.action, inp, risk_state, limits, sizing, fraction)
    verdict = evaluate(proposed, risk_state, limits)
    order = None
    if verdict.approved:
        order = Order(
            client_order_id=client_order_id_for(decision_id),
            decision_id=decision_id,
            symbol=inp.symbol,
            side=proposed.side,
            quantity=proposed.quantity,
            created_at=now,
            market_time=inp.candle_time + timeframe_delta(inp.timeframe),
        )
    return Decision(decision_id, inp, votes, consensus, proposed, verdict, order, now, calls)
