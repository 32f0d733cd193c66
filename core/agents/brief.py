"""The compact numeric brief an LLM agent reads: the newest features by group, what the model
says and how far it has earned trust, the regime, the position, and the last decisions with how
they turned out. Rendered as sorted, rounded JSON, so the same facts always give the same
prompt (its hash keys the replay cache) and no calendar date is shown (a model that recognised
the date could recall what happened next)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from core.features.registry import FEATURES

# Calendar features would let a model place the candle in history; the session flags stay.
_HIDDEN = frozenset(f.name for f in FEATURES if f.group == "time" and "session" not in f.name)
_GROUP_OF = {f.name: f.group for f in FEATURES if f.name not in _HIDDEN}


@dataclass(frozen=True, slots=True)
class PastDecision:
    candle_time: datetime
    action: str
    price: Decimal


@dataclass(frozen=True, slots=True)
class Brief:
    symbol: str
    timeframe: str
    features: Mapping[str, float]
    model_probability: float
    model_edge: float
    model_significant: bool
    model_quality: Mapping[str, float]  # out of sample: oof_auc, oof_brier, oof_entries...
    held: bool
    held_candles: int
    open_orders: int
    price: Decimal
    recent: Sequence[tuple[int, PastDecision]]  # (candles ago, decision), newest first

    def as_dict(self) -> dict[str, object]:
        groups: dict[str, dict[str, float]] = {}
        book: dict[str, float] = {}
        for name, value in self.features.items():
            group = _GROUP_OF.get(name)
            if group is not None:
                groups.setdefault(group, {})[name] = _round(value)
            elif name.startswith("book_"):
                book[name] = _round(value)
        return {
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "model": {
                "p_up_after_costs": _round(self.model_probability),
                "expected_edge": _round(self.model_edge),
                "significant_out_of_sample": self.model_significant,
                "out_of_sample": {k: _round(v) for k, v in sorted(self.model_quality.items())},
            },
            "regime": regime_of(self.features),
            "position": {
                "held": self.held,
                "held_candles": self.held_candles,
                "open_orders": self.open_orders,
            },
            "recent_decisions": [
                {
                    "candles_ago": ago,
                    "action": d.action,
                    "return_since": _round(float(self.price / d.price - 1) if d.price else 0.0),
                }
                for ago, d in self.recent
            ],
            "features": groups,
            "order_book": book or None,
        }

    def render(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))


TRENDS = ("trend_up", "trend_down", "range")
REGIMES = tuple(t + v for t in TRENDS for v in ("", "_high_vol"))


REGIME_FEATURES = ("trend_regime", "vol_regime_pct")  # what regime_of reads


def regime_of(features: Mapping[str, float]) -> str:
    """`trend_up`, `trend_down` or `range` (ADX and EMA50, the trend_regime feature), with the
    volatility's percentile: `..._high_vol` above 0.8."""
    try:  # one lookup each, not a membership test and a read: every decision asks
        trend = features["trend_regime"]
    except KeyError:
        trend = 0.0
    try:
        return regime_at(trend, features["vol_regime_pct"])
    except KeyError:
        return regime_at(trend, None)


def regime_at(trend: float, vol_pct: float | None) -> str:
    """regime_of from the two features' values (None: the volatility was not computed)."""
    name = "trend_up" if trend > 0 else "trend_down" if trend < 0 else "range"
    return name if vol_pct is None else name + ("_high_vol" if vol_pct > 0.8 else "")


def _round(x: float) -> float:
    if not math.isfinite(x):
        return 0.0
    return float(f"{x:.4g}")
