"""What a walk-forward evaluation found, per fold and overall: plain data the service fills and
the report and the command print."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from core.backtest.policy_eval import TradingResult

STRATEGIES = ("model", "baseline", "buy_and_hold")


@dataclass(frozen=True)
class FoldScores:
    label: str  # "fold 1" .. or "overall"
    start: pd.Timestamp
    end: pd.Timestamp
    rows: int
    model: dict[str, float]  # auc, log_loss, brier, ece, base_rate, accuracy
    baseline_auc: float  # the baseline's P(up) ranked against the model's label
    trading: dict[str, TradingResult]  # model, baseline, buy_and_hold
    weights: dict[str, float] = field(default_factory=dict)
    tradeable: bool = False


@dataclass(frozen=True)
class RegimeEvaluation:
    name: str
    symbols: tuple[str, ...]
    folds: list[FoldScores]
    overall: FoldScores
    scored: pd.DataFrame  # every test row: symbol, label, p, p_baseline, fold
    equity: pd.DataFrame  # per strategy, the portfolio's equity over the test candles
    importance: pd.Series  # tree members' gain shares, mean over folds (empty: none kept)
