"""Small stand-ins for the decision tests: a model with a fixed probability, agents that always
vote the same, and a config over BTC and ETH 1h."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from types import MappingProxyType

import numpy as np
import pandas as pd

from core.agents.base import AgentContext, Vote
from core.agents.panel import RulePanel
from core.consensus import ConsensusConfig
from core.decision import Sizing
from core.risk.limits import RiskLimits
from core.types import Action
from services.decide.batch import FEATURE_WINDOW
from services.decide.config import DecisionConfig

D = Decimal
SYMBOLS = ("BTC/USDT", "ETH/USDT")
ROWS = FEATURE_WINDOW + 30  # candles stored by the `stored` fixture (tests/services/conftest)


class LinearEdge:
    """The policy's view of a test model: tradeable, no sequence context, and an edge that is
    positive above p = 0.5 (full size at p = 0.7) and negative below."""

    tradeable = True
    context = 0
    quality: Mapping[str, float] = MappingProxyType({"oof_auc": 0.55, "oof_entries": 40.0})

    def edge(self, probabilities: np.ndarray) -> np.ndarray:
        return (np.asarray(probabilities, dtype=np.float64) - 0.5) * 0.02


@dataclass
class FixedModel(LinearEdge):
    probability: float = 0.9
    name: str = "fixed"
    version: str = "1"
    feature_set_version: str = "fs-test"

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return np.full(len(features), self.probability)


@dataclass
class Voter:
    name: str
    action: Action
    confidence: float = 0.8

    def vote(self, context: AgentContext) -> Vote:
        return Vote(self.name, self.action, self.confidence, f"always {self.action.value}")


BUYERS = RulePanel((Voter("bull", Action.BUY), Voter("bear", Action.BUY)))
SELLERS = RulePanel((Voter("bull", Action.SELL), Voter("bear", Action.SELL)))


def config(**limits: object) -> DecisionConfig:
    base = RiskLimits(
        whitelist=frozenset(SYMBOLS),
        max_order_notional=D(1500),
        max_position_notional=D(3000),
        max_total_exposure=D(5000),
        max_daily_loss=D(300),
    )
    return DecisionConfig(
        account="paper",
        exchange="binance",
        symbols=SYMBOLS,
        timeframe="1h",
        reference_symbol="BTC/USDT",
        consensus=ConsensusConfig(),
        sizing=Sizing(D(1000)),
        limits=replace(base, **limits),  # type: ignore[arg-type]
    )
