"""Deterministic offline Bull and Bear agents: the backend when no LLM endpoint is configured.

Each argues one side. It scores the evidence for its side from the features and the model's
probability, votes for its side when the evidence is strong enough and HOLD otherwise.
"""

from __future__ import annotations

from core.agents.base import AgentContext, Vote
from core.types import Action


def _clip(x: float) -> float:
    return max(0.0, min(1.0, x))


class BullAgent:
    name = "bull"

    def __init__(self, min_confidence: float = 0.55) -> None:
        self.min_confidence = min_confidence

    def vote(self, context: AgentContext) -> Vote:
        f = context.features
        p = context.model_probability
        trend_up = f["ema_12_ratio"] > 0 and f["macd_hist"] > 0
        not_overbought = f["rsi_14"] < 0.70
        score = _clip(
            0.5
            + (p - 0.5) * 2.0
            + (0.1 if trend_up else -0.1)
            + (0.05 if not_overbought else -0.15)
        )
        reason = (
            f"model p_up={p:.2f}, {'uptrend' if trend_up else 'no uptrend'} "
            f"(ema12 {f['ema_12_ratio']:+.3%}, macd_hist {f['macd_hist']:+.5f}), "
            f"rsi {f['rsi_14'] * 100:.0f}"
        )
        action = Action.BUY if score >= self.min_confidence else Action.HOLD
        return Vote(self.name, action, round(score, 4), reason)


class BearAgent:
    name = "bear"

    def __init__(self, min_confidence: float = 0.55) -> None:
        self.min_confidence = min_confidence

    def vote(self, context: AgentContext) -> Vote:
        f = context.features
        p = context.model_probability
        trend_down = f["ema_12_ratio"] < 0 and f["macd_hist"] < 0
        overbought = f["rsi_14"] > 0.70
        score = _clip(
            0.5 + (0.5 - p) * 2.0 + (0.1 if trend_down else -0.1) + (0.1 if overbought else 0.0)
        )
        reason = (
            f"model p_up={p:.2f}, {'downtrend' if trend_down else 'no downtrend'} "
            f"(ema12 {f['ema_12_ratio']:+.3%}, macd_hist {f['macd_hist']:+.5f}), "
            f"rsi {f['rsi_14'] * 100:.0f}"
        )
        action = Action.SELL if score >= self.min_confidence else Action.HOLD
        return Vote(self.name, action, round(score, 4), reason)
