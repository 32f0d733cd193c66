"""The naive baseline every model must beat in the same run: six standard TA-Lib indicators and
a small, untuned XGBoost on a fixed-horizon sign label. No I/O here.

It is deliberately plain: if the real model cannot beat this on the same folds and the same
costs, its extra features and tuning are not earning anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
import talib
import xgboost as xgb

from core.errors import FatalError
from core.labels import forward_log_return

BASELINE_FEATURES: tuple[str, ...] = (
    "rsi_14",
    "macd_hist",
    "roc_4",
    "atr_pct_14",
    "bb_pct_b_20",
    "adx_14",
)

# Fixed on purpose: a tuned baseline is no longer the naive reference.
BASELINE_PARAMS = {
    "n_estimators": 200,
    "max_depth": 3,
    "learning_rate": 0.05,
    "subsample": 0.8,
    "tree_method": "hist",
    "n_jobs": 1,
}


class BaselineError(FatalError, ValueError):
    """The baseline cannot be trained or scored on what it was given."""


def _frame_of(candles: pd.DataFrame) -> tuple[pd.DatetimeIndex, dict[str, np.ndarray]]:
    missing = [k for k in ("open_time", "high", "low", "close") if k not in candles]
    if missing:
        raise BaselineError(f"candles lack the columns {missing}")
    index = pd.DatetimeIndex(candles["open_time"], name="open_time")
    arrays = {k: candles[k].to_numpy(dtype=np.float64) for k in ("high", "low", "close")}
    return index, arrays


def baseline_features(candles: pd.DataFrame) -> pd.DataFrame:
    """The BASELINE_FEATURES indexed by open_time; row t uses candles <= t only (TA-Lib runs
    forward), warm-up rows are NaN. Scale-free: prices enter only as ratios to the close."""
    index, a = _frame_of(candles)
    h, lo, c = a["high"], a["low"], a["close"]
    _, _, hist = talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
    upper, _, lower = talib.BBANDS(c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    width = upper - lower
    with np.errstate(divide="ignore", invalid="ignore"):
        # A flat band (width 0) puts the close in the middle, as core.features does.
        pct_b = np.where(width > 0, (c - lower) / width, 0.5)
    pct_b[np.isnan(width)] = np.nan
    columns = {
        "rsi_14": talib.RSI(c, timeperiod=14) / 100,
        "macd_hist": hist / c,
        "roc_4": talib.ROC(c, timeperiod=4) / 100,
        "atr_pct_14": talib.ATR(h, lo, c, timeperiod=14) / c,
        "bb_pct_b_20": pct_b,
        "adx_14": talib.ADX(h, lo, c, timeperiod=14) / 100,
    }
    values = np.column_stack([columns[name] for name in BASELINE_FEATURES])
    values[~np.isfinite(values)] = np.nan
    return pd.DataFrame(values, index=index, columns=list(BASELINE_FEATURES))


def sign_label(candles: pd.DataFrame, horizon: int | timedelta) -> pd.Series:
    """1 when close[t + horizon] > close[t], else 0; NaN where that close is unknown (the end).
    An int horizon counts rows; a duration compares with the close stored at exactly
    t + horizon (core.labels' gap-safe reading: a gap leaves NaN). Unlike core.labels, no cost
    threshold: the naive question is only "up or not"."""
    if isinstance(horizon, timedelta):
        if horizon <= timedelta(0):
            raise BaselineError(f"label horizon must be positive, got {horizon}")
        forward = forward_log_return(candles, horizon)
    else:
        if horizon < 1:
            raise BaselineError(f"label horizon must be >= 1, got {horizon}")
        index, a = _frame_of(candles)
        close = pd.Series(a["close"], index=index)
        forward = np.log(close.shift(-horizon) / close)
    return (forward > 0).astype(np.float64).where(forward.notna()).rename("label")


@dataclass(frozen=True, slots=True)
class BaselineModel:
    features: tuple[str, ...]
    model: xgb.XGBClassifier

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """P(up) per row, 1-D; NaN features (warm-up) are XGBoost's missing values."""
        missing = [f for f in self.features if f not in features]
        if missing:
            raise BaselineError(f"features lack the columns {missing}")
        x = features.loc[:, list(self.features)].to_numpy(dtype=np.float32)
        return self.model.predict_proba(x)[:, 1].astype(np.float64)


def _aligned(features: pd.DataFrame, label: pd.Series) -> pd.DataFrame:
    """Features and label side by side: row for row when the indexes are the same (a pooled
    multi-symbol frame repeats times), else joined on a unique time index."""
    if features.index.equals(label.index):
        return features.assign(label=label.to_numpy())
    if not (features.index.is_unique and label.index.is_unique):
        raise BaselineError("features and label have different, repeating indexes: align them")
    return features.join(label.rename("label"), how="inner")


def fit_baseline(features: pd.DataFrame, label: pd.Series, seed: int) -> BaselineModel:
    """Train on the rows where every feature and the label are known (aligned by index)."""
    missing = [f for f in BASELINE_FEATURES if f not in features]
    if missing:
        raise BaselineError(f"features lack the columns {missing}")
    rows = _aligned(features.loc[:, list(BASELINE_FEATURES)], label).dropna()
    if rows.empty or rows["label"].nunique() < 2:
        raise BaselineError(
            f"need rows of both classes to train the baseline, got {len(rows)} rows with "
            f"labels {sorted(rows['label'].unique())}"
        )
    x = rows.loc[:, list(BASELINE_FEATURES)].to_numpy(dtype=np.float32)
    y = rows["label"].to_numpy(dtype=np.int32)
    model = xgb.XGBClassifier(**BASELINE_PARAMS, random_state=seed)
    model.fit(x, y)
    return BaselineModel(BASELINE_FEATURES, model)
