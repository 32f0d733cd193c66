"""Scores of probabilities against 0/1 labels: ranking (AUC), calibration (log-loss, Brier,
expected calibration error)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

EPS = 1e-7
CALIBRATION_BINS = 10


def calibration_error(p: np.ndarray, y: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error over equal-count bins: the mean |observed rate - mean p|,
    weighted by bin size (equal-count bins: probabilities bunch near the base rate)."""
    if len(p) == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    error = 0.0
    for part in np.array_split(order, min(bins, len(p))):
        error += len(part) * abs(float(np.mean(y[part])) - float(np.mean(p[part])))
    return error / len(p)


def scores(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """auc, log_loss, brier, ece, accuracy and the base rate; AUC is NaN with a single class."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(y, dtype=np.float64)
    both = len(np.unique(y)) == 2
    return {
        "auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "ece": calibration_error(p, y),
        "accuracy": float(np.mean((p >= 0.5) == (y == 1))),
        "base_rate": float(np.mean(y)),
    }
