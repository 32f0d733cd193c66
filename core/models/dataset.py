"""Features joined with labels, per symbol, pooled in time order."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from core.features.build import MissingReference, build_features
from core.features.schema import validate_training_rows
from core.labels import forward_return_label


def training_rows(
    candles_by_symbol: Mapping[str, pd.DataFrame],
    reference: str,
    horizon: int,
    fee_threshold: float,
) -> pd.DataFrame:
    """Rows of features + label for every symbol; `reference` names the cross-asset symbol."""
    if reference not in candles_by_symbol:
        raise MissingReference(f"reference {reference} is not among {list(candles_by_symbol)}")
    parts = []
    for symbol, candles in candles_by_symbol.items():
        features = build_features(candles, candles_by_symbol[reference])
        label = forward_return_label(candles, horizon, fee_threshold)
        if "is_filled" in candles:
            # A label whose window [t, t+horizon] touches a synthetic candle is not a market fact.
            filled = pd.Series(candles["is_filled"].to_numpy(dtype=float), index=label.index)
            touched = filled[::-1].rolling(horizon + 1, min_periods=1).max()[::-1] > 0
            label = label.mask(touched)
        part = features.join(label).dropna()
        part["symbol"] = symbol
        parts.append(part)
    return validate_training_rows(pd.concat(parts).sort_index(kind="stable"))
