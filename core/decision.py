"""One decision for one symbol at one candle close: agents -> consensus -> sizing -> risk gate.

Pure: the caller brings the features, the model's probability, the risk state and the time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from core.agents.base import Agent, AgentContext, InvalidVote, Vote
from core.candles.timeframe import timeframe_delta
from core.consensus import Consensus, ConsensusConfig, combine
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


def collect_votes(agents: Sequence[Agent], context: AgentContext) -> tuple[Vote, ...]:
    votes = []
    for agent in agents:
        try:
            votes.append(agent.vote(context))
        except (InvalidVote, KeyError, ValueError) as exc:
            # A broken agent abstains loudly; it never blocks or decides the trade.
            votes.append(Vote(agent.name, Action.HOLD, 0.0, f"agent failed: {exc}"[:200]))
    return tuple(votes)


def size_order(
    action: Action, inp: DecisionInput, state: RiskState, limits: RiskLimits, sizing: Sizing
) -> ProposedOrder:
    """A BUY spends the configured notional; a SELL closes what is held and not already being
    sold. Amounts are rounded down to the exchange's step."""
    rules = limits.rules_for(inp.symbol)
    if action is Action.BUY:
        qty = sizing.order_notional / inp.price
        return normalise(ProposedOrder(inp.symbol, Side.BUY, qty, inp.price), rules)
    free = available_to_sell(inp.symbol, state)
    return normalise(ProposedOrder(inp.symbol, Side.SELL, free, inp.price), rules)


def decide(
    inp: DecisionInput,
    agents: Sequence[Agent],
    consensus_config: ConsensusConfig,
    sizing: Sizing,
    risk_state: RiskState,
    limits: RiskLimits,
    now: datetime,
) -> Decision:
    decision_id = decision_id_for(inp.account, inp.symbol, inp.timeframe, inp.candle_time)
    context = AgentContext(inp.symbol, inp.features, inp.model_probability)
    votes = collect_votes(agents, context)
    consensus = combine(inp.model_probability, votes, consensus_config)
    if consensus.action is Action.HOLD:
        return Decision(decision_id, inp, votes, consensus, None, None, None, now)
    proposed = size_order(consensus.action, inp, risk_state, limits, sizing)
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
    return Decision(decision_id, inp, votes, consensus, proposed, verdict, order, now)
