"""Training labels. Kept apart from features: a label looks forward by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd


def forward_return_label(candles: pd.DataFrame, horizon: int, fee_threshold: float) -> pd.Series:
    """1 when the log return from close[t] to close[t+horizon] beats the fee threshold, else 0.

    The last `horizon` rows have no future and are NaN; drop them before training.
    """
    if horizon < 1:
        raise ValueError(f"label horizon must be >= 1, got {horizon}")
    close = pd.Series(
        candles["close"].to_numpy(dtype=np.float64),
        index=pd.DatetimeIndex(candles["open_time"], name="open_time"),
    )
    forward = np.log(close.shift(-horizon) / close)
    label = (forward > fee_threshold).astype(np.float64)
    return label.where(forward.notna()).rename("label")
