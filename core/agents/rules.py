"""Deterministic offline Bull and Bear agents: the backend when no LLM endpoint is configured.

Each argues one side. It scores the evidence for its side from the market's features only: the
model's probability is in the context (cited in the reason) but never scored again, or the
consensus would count the model three times. It votes for its side when the evidence is strong
enough and HOLD otherwise. When a live order book was seen at the candle's close, its top-5
imbalance adds a little evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.agents.base import AgentContext, Vote
from core.types import Action

# The candle features the rule agents read; a test checks they exist in the registry.
RULE_FEATURES = ("ema_ratio_12", "macd_hist", "rsi_14")
BOOK_IMBALANCE = "book_imbalance_top5"


def _clip(x: float) -> float:
    return max(0.0, min(1.0, x))


def _book(f: Mapping[str, float], sign: float) -> tuple[float, str]:
    imbalance = f.get(BOOK_IMBALANCE)
    if imbalance is None:
        return 0.0, ""
    return (0.05 if imbalance * sign > 0.2 else 0.0), f", book imbalance {imbalance:+.2f}"


def evidence(ema: float, macd: float, rsi: float, p: float, trend: str) -> str:
    """What an agent cites: the model's probability, the trend and its readings."""
    return cited(p) + trend + readings(ema, macd, rsi)


# The two halves of `evidence` around the trend word, the same for both agents (core.holds
# writes each once per candle).
def cited(p: float) -> str:
    return f"model p_up={p:.2f}, "


def readings(ema: float, macd: float, rsi: float) -> str:
    return f" (ema12 {ema:+.3%}, macd_hist {macd:+.5f}), rsi {rsi * 100:.0f}"


# The signs of the evidence each agent weighs, elementwise: `ema`, `macd` and `rsi` are floats
# or arrays of them (core.holds reads many candles at once).
def bull_signs(ema: Any, macd: Any, rsi: Any) -> tuple[Any, Any]:
    """(uptrend, not overbought)."""
    return (ema > 0) & (macd > 0), rsi < 0.70


def bear_signs(ema: Any, macd: Any, rsi: Any) -> tuple[Any, Any]:
    """(downtrend, overbought)."""
    return (ema < 0) & (macd < 0), rsi > 0.70


def bull_case(
    trend_up: bool, not_overbought: bool, book_bonus: float, min_confidence: float
) -> tuple[Action, float, str]:
    """The Bull's action, confidence and trend word, from the signs of its evidence."""
    score = _clip(
        0.5 + (0.1 if trend_up else -0.1) + (0.05 if not_overbought else -0.15) + book_bonus
    )
    trend = "uptrend" if trend_up else "no uptrend"
    return (_BUY if score >= min_confidence else _HOLD), round(score, 4), trend


def bear_case(
    trend_down: bool, overbought: bool, book_bonus: float, min_confidence: float
) -> tuple[Action, float, str]:
    """The Bear's action, confidence and trend word, from the signs of its evidence."""
    score = _clip(0.5 + (0.1 if trend_down else -0.1) + (0.1 if overbought else 0.0) + book_bonus)
    trend = "downtrend" if trend_down else "no downtrend"
    return (_SELL if score >= min_confidence else _HOLD), round(score, 4), trend


def bull_view(f: Mapping[str, float], p: float, min_confidence: float) -> tuple[Action, float, str]:
    """The Bull's action, confidence and reason: its vote's."""
    # Each feature read once: a backtest asks every agent at every candle of every pair.
    ema, macd, rsi = f["ema_ratio_12"], f["macd_hist"], f["rsi_14"]
    book_bonus, book_note = _book(f, +1.0)
    action, confidence, trend = bull_case(*bull_signs(ema, macd, rsi), book_bonus, min_confidence)
    return action, confidence, evidence(ema, macd, rsi, p, trend) + book_note


def bear_view(f: Mapping[str, float], p: float, min_confidence: float) -> tuple[Action, float, str]:
    """The Bear's action, confidence and reason: its vote's."""
    ema, macd, rsi = f["ema_ratio_12"], f["macd_hist"], f["rsi_14"]
    book_bonus, book_note = _book(f, -1.0)
    action, confidence, trend = bear_case(*bear_signs(ema, macd, rsi), book_bonus, min_confidence)
    return action, confidence, evidence(ema, macd, rsi, p, trend) + book_note


_BUY, _SELL, _HOLD = Action.BUY, Action.SELL, Action.HOLD


class BullAgent:
    name = "bull"
    reads = (*RULE_FEATURES, BOOK_IMBALANCE)  # the features its vote reads

    def __init__(self, min_confidence: float = 0.55) -> None:
        self.min_confidence = min_confidence

    def vote(self, context: AgentContext) -> Vote:
        f, p = context.features, context.model_probability
        return Vote(self.name, *bull_view(f, p, self.min_confidence))


class BearAgent:
    name = "bear"
    reads = (*RULE_FEATURES, BOOK_IMBALANCE)

    def __init__(self, min_confidence: float = 0.55) -> None:
        self.min_confidence = min_confidence

    def vote(self, context: AgentContext) -> Vote:
        f, p = context.features, context.model_probability
        return Vote(self.name, *bear_view(f, p, self.min_confidence))
