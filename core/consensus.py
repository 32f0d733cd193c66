"""The model's policy proposes; the model, Bull and Bear are weighed by regime; the agents may
stop an entry. Each input's share of the score is recorded.

The model speaks through the decision policy (core.models.policy): it enters only when the
calibrated expected edge beats costs, holds for the label horizon unless the edge reverses, and
sizes by the edge. The agents argue from the market itself. An entry goes ahead only when the
weighted score clears the confidence threshold (a net score this far against it vetoes it) and
Bull and Bear do not strongly disagree. Exits are never stopped: leaving a position the
model no longer backs is the cautious side, and so is every failure: agents that all abstained
or a spent budget make the decision NO_TRADE, recorded with its cause, never a HOLD that looks
like an opinion.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from core.agents.base import Vote
from core.agents.budget import BUDGET_EXCEEDED
from core.agents.panel import Deliberation
from core.models.policy import Holding, PolicyConfig, step
from core.types import Action

AGENTS_ABSTAINED = "AGENTS_ABSTAINED"
MODEL = "model"
INPUTS = (MODEL, "bull", "bear")  # what the consensus weighs (the agents by their names)
# The members as plain names: `Action.BUY` is a descriptor call each time it is read, and a
# backtest reads these several times for each of its hundreds of thousands of decisions.
_BUY, _SELL, _HOLD, _NO_TRADE = Action.BUY, Action.SELL, Action.HOLD, Action.NO_TRADE


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    model_weight: float = 0.5
    agent_weight: float = 0.25  # each agent
    # The confidence threshold: an entry needs a net score of at least -threshold (this far
    # against it vetoes it).
    threshold: float = 0.15
    policy: PolicyConfig = field(default_factory=lambda: PolicyConfig(horizon=4))
    require_significance: bool = True  # off: trade a model whose edge was not proven
    # Weights per regime (core.agents.brief.regime_of, e.g. "trend_up", "range_high_vol"; a
    # regime not listed falls back to its trend part, then to the weights above): input name
    # ("model", "bull", "bear") -> weight.
    regime_weights: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    disagreement: float = 0.6  # Bull BUY and Bear SELL both at least this sure: no entry


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
    # How each input moved the score: its weight times its signed conviction, over the total
    # weight of those that spoke (they sum to the score).
    contributions: Mapping[str, float] = field(default_factory=dict)
    regime: str = ""


_NO_WEIGHTS: Mapping[str, float] = {}


def weights_for(regime: str, config: ConsensusConfig) -> Mapping[str, float]:
    table = config.regime_weights
    if not table:
        return _NO_WEIGHTS
    found = table.get(regime) or table.get(regime.removesuffix("_high_vol"))
    return found or _NO_WEIGHTS


@dataclass(frozen=True, slots=True)
class Weighing:
    """How the inputs weigh at a regime: the model's weight, each agent that voted by its
    weight times its signed conviction, and the total weight of those that spoke."""

    names: tuple[str, ...]  # MODEL, then each agent that voted
    model_weight: float
    agents: tuple[float, ...]  # weight * sign * confidence, in `names` order
    total: float
    agent_shares: tuple[float, ...]  # each of `agents` over `total` (0.0 if none spoke)


def weighing(votes: tuple[Vote, ...], regime: str, config: ConsensusConfig) -> Weighing:
    """(Run for every decision of a backtest: plain loops, no intermediate dicts.)"""
    weights = weights_for(regime, config)
    w_model = weights.get(MODEL, config.model_weight)
    names, raw, total = [MODEL], [], w_model
    for vote in votes:
        if not vote.abstained:
            w = weights.get(vote.agent, config.agent_weight)
            names.append(vote.agent)
            action = vote.action  # compared, not hashed: an enum's hash is a Python call
            sign = 1.0 if action is _BUY else -1.0 if action is _SELL else 0.0
            raw.append(w * sign * vote.confidence)
            total += w
    agent_shares = tuple(a / total for a in raw) if total else (0.0,) * len(raw)
    return Weighing(tuple(names), w_model, tuple(raw), total, agent_shares)


def shares(model_score: float, weighed: Weighing) -> dict[str, float]:
    """Each input's share of the net score; an abstaining agent has none. (The agents' shares
    are the weighing's: only the model's changes from one candle to the next.)"""
    return shares_of(model_share(model_score, weighed), weighed)


def model_share(model_score: float, weighed: Weighing) -> float:
    """The model's share of the net score (0.0 where no input has weight)."""
    total = weighed.total
    return weighed.model_weight * model_score / total if total else 0.0


def shares_of(model: float, weighed: Weighing) -> dict[str, float]:
    """Each input's share, the model's being `model` (`model_share`)."""
    return dict(zip(weighed.names, (model, *weighed.agent_shares), strict=True))


def net_score(shared: Iterable[float]) -> float:
    """The shares' sum, added left to right from 0.0 (as core.holds adds them for many
    candles at once), rounded to six places."""
    total = 0.0
    for share in shared:
        total += share
    return round(total, 6)


def contributions(
    model_score: float, votes: tuple[Vote, ...], regime: str, config: ConsensusConfig
) -> dict[str, float]:
    """Each input's share of the net score (`shares` of the votes' `weighing`)."""
    return shares(model_score, weighing(votes, regime, config))


def combine(
    signal: ModelSignal,
    deliberation: Deliberation,
    holding: Holding,
    config: ConsensusConfig,
    regime: str = "",
) -> Consensus:
    edge = signal.edge
    shared = contributions(model_score_of(edge, config), deliberation.votes, regime, config)
    score = net_score(shared.values())
    tradeable = signal.tradeable or not config.require_significance
    proposal, fraction, _ = step(holding, edge, config.policy, tradeable)
    about = about_of(edge, signal.probability, score)
    failed = _failure(deliberation)
    if proposal is _SELL:  # an exit never waits for the agents: leaving is cautious
        despite = f"; despite {failed}" if failed else ""
        action, why, size = _SELL, f"policy exits ({about}){despite}", fraction
    elif failed:
        action, why, size = _NO_TRADE, f"{failed} ({about})", 1.0
    elif proposal is _HOLD:
        action, why, size = _HOLD, hold_reason(about, tradeable), 1.0
    else:
        stop = _entry_stopped(score, deliberation.votes, config)
        action = _HOLD if stop else _BUY
        why, size = (f"{stop} ({about})", 1.0) if stop else (f"policy enters ({about})", fraction)
    return Consensus(action, score, abs(score), why, size, shared, regime)


def model_score_of(edge: float, config: ConsensusConfig) -> float:
    """The model's signed conviction: its edge over the full-size edge, in [-1, 1]."""
    full = config.policy.full_size_edge
    return 0.0 if math.isnan(edge) else max(-1.0, min(1.0, edge / full))


def model_scores(edges: np.ndarray, config: ConsensusConfig) -> np.ndarray:
    """`model_score_of` each of `edges` at once, float for float (core.holds scores a
    backtest's holds by the hundred thousand; tests/core/test_holds.py holds the two equal)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scaled = np.clip(edges / config.policy.full_size_edge, -1.0, 1.0)
    return np.where(np.isnan(edges), 0.0, scaled)


def about_of(edge: float, probability: float, score: float) -> str:
    return f"edge {edge:+.5f}, p {probability:.3f}, net score {score:+.3f}"


def hold_reason(about: str, tradeable: bool) -> str:
    why = "model abstains: edge not significant out of fold" if not tradeable else ""
    return f"policy holds ({about}) {why}".strip()


def _failure(deliberation: Deliberation) -> str:
    if deliberation.budget_exceeded:
        return f"{BUDGET_EXCEEDED}: {deliberation.budget_exceeded}"
    if deliberation.all_abstained:
        causes = sorted({v.abstained for v in deliberation.votes})
        return f"{AGENTS_ABSTAINED}: every agent abstained ({', '.join(causes)})"
    return ""


def _entry_stopped(score: float, votes: tuple[Vote, ...], config: ConsensusConfig) -> str:
    if score < -config.threshold:
        return "agents veto the entry"
    sure, bull, bear = config.disagreement, False, False
    for v in votes:  # a loop, not two any(): every entry of a backtest passes here
        if not v.abstained and v.confidence >= sure:
            bull = bull or v.action is _BUY
            bear = bear or v.action is _SELL
    if bull and bear:
        return "strong disagreement between the agents"
    return ""
