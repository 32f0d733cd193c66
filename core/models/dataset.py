"""Features joined with labels, per symbol, pooled in time order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import pandas as pd

from core.features.build import MissingReference, build_features
from core.features.schema import validate_training_rows
from core.labels import (
    TripleBarrier,
    forward_log_return,
    forward_return_label,
    touches_filled,
    triple_barrier_label,
)


@dataclass(frozen=True, slots=True)
class LabelSpec:
    """What a row's label means: the forward log return over `horizon` beats `cost` (fee and
    slippage, both ways), or, with `barrier`, the triple-barrier outcome over `horizon`."""

    horizon: timedelta
    cost: float
    barrier: TripleBarrier | None = None

    def label(self, candles: pd.DataFrame) -> pd.Series:
        if self.barrier is None:
            return forward_return_label(candles, self.horizon, self.cost)
        return triple_barrier_label(candles, self.horizon, self.barrier, self.cost)


def training_rows(
    candles_by_symbol: Mapping[str, pd.DataFrame], reference: str, spec: LabelSpec
) -> pd.DataFrame:
    """Rows of features + label + forward return for every symbol; `reference` names the
    cross-asset symbol."""
    if reference not in candles_by_symbol:
        raise MissingReference(f"reference {reference} is not among {list(candles_by_symbol)}")
    parts = []
    for symbol, candles in candles_by_symbol.items():
        features = build_features(candles, candles_by_symbol[reference])
        label = spec.label(candles)
        forward = forward_log_return(candles, spec.horizon)
        if "is_filled" in candles:
            # A label whose window [t, t+horizon] touches a synthetic candle is not a market fact.
            label = label.mask(touches_filled(candles, spec.horizon))
        part = features.join(label).join(forward).dropna()
        part["symbol"] = symbol
        parts.append(part)
    return validate_training_rows(pd.concat(parts).sort_index(kind="stable"))
