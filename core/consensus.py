"""Weighted consensus of the model and the agents' votes; HOLD below the confidence threshold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.agents.base import Vote
from core.types import Action


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    model_weight: float = 0.5
    agent_weight: float = 0.25  # each agent
    threshold: float = 0.15  # |net score| needed to act


@dataclass(frozen=True, slots=True)
class Consensus:
    action: Action
    score: float  # in [-1, 1]: > 0 leans BUY, < 0 leans SELL
    confidence: float  # |score|
    reason: str


_SIGN = {Action.BUY: 1.0, Action.SELL: -1.0, Action.HOLD: 0.0}


def combine(model_probability: float, votes: Sequence[Vote], config: ConsensusConfig) -> Consensus:
    model_score = (model_probability - 0.5) * 2.0
    weighted = config.model_weight * model_score
    total = config.model_weight
    for vote in votes:
        weighted += config.agent_weight * _SIGN[vote.action] * vote.confidence
        total += config.agent_weight
    score = weighted / total if total else 0.0
    confidence = abs(score)
    if confidence < config.threshold:
        action = Action.HOLD
        reason = f"net score {score:+.3f} below threshold {config.threshold}"
    else:
        action = Action.BUY if score > 0 else Action.SELL
        reason = f"net score {score:+.3f} (model {model_score:+.3f}, {len(votes)} votes)"
    return Consensus(action, round(score, 6), round(confidence, 6), reason)
