"""The model's policy proposes, the agents may veto an entry: a weighted consensus.

The model speaks through the decision policy (core.models.policy): it enters only when the
calibrated expected edge beats costs, holds for the label horizon unless the edge reverses, and
sizes by the edge. The agents argue from the market itself (never from the model's probability,
which would count the model again); a net score against an entry beyond the threshold vetoes
it. Exits are never vetoed: leaving a position the model no longer backs is the cautious side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.agents.base import Vote
from core.models.policy import Holding, PolicyConfig, step
from core.types import Action


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    model_weight: float = 0.5
    agent_weight: float = 0.25  # each agent
    threshold: float = 0.15  # a net score this far against an entry vetoes it
    policy: PolicyConfig = field(default_factory=lambda: PolicyConfig(horizon=4))
    require_significance: bool = True  # off: trade a model whose edge was not proven


@dataclass(frozen=True, slots=True)
class ModelSignal:
    probability: float  # calibrated P(label = 1)
    edge: float  # expected net log return of entering now (NaN: no prediction)
    tradeable: bool  # the model's out-of-fold edge was significant


@dataclass(frozen=True, slots=True)
class Consensus:
    action: Action
    score: float  # in [-1, 1]: > 0 leans BUY, < 0 leans SELL
    confidence: float  # |score|
    reason: str
    fraction: float = 1.0  # of the full order size, for a BUY


_SIGN = {Action.BUY: 1.0, Action.SELL: -1.0, Action.HOLD: 0.0}


def net_score(model_score: float, votes: Sequence[Vote], config: ConsensusConfig) -> float:
    weighted = config.model_weight * model_score
    total = config.model_weight
    for vote in votes:
        weighted += config.agent_weight * _SIGN[vote.action] * vote.confidence
        total += config.agent_weight
    return weighted / total if total else 0.0


def combine(
    signal: ModelSignal, votes: Sequence[Vote], holding: Holding, config: ConsensusConfig
) -> Consensus:
    edge = signal.edge
    full = config.policy.full_size_edge
    model_score = 0.0 if math.isnan(edge) else max(-1.0, min(1.0, edge / full))
    score = round(net_score(model_score, votes, config), 6)
    tradeable = signal.tradeable or not config.require_significance
    proposal, fraction, _ = step(holding, edge, config.policy, tradeable)
    about = f"edge {edge:+.5f}, p {signal.probability:.3f}, net score {score:+.3f}"
    if proposal is Action.HOLD:
        why = "model abstains: edge not significant out of fold" if not tradeable else ""
        return Consensus(Action.HOLD, score, abs(score), f"policy holds ({about}) {why}".strip())
    if proposal is Action.BUY and score < -config.threshold:
        return Consensus(Action.HOLD, score, abs(score), f"agents veto the entry ({about})")
    word = "enters" if proposal is Action.BUY else "exits"
    return Consensus(proposal, score, abs(score), f"policy {word} ({about})", fraction)
