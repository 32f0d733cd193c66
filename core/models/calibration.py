"""Calibrate a member's probabilities on its out-of-fold predictions, then stack the members:
weights learned on out-of-fold predictions, never on rows a member trained on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import minimize
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from core.models.metrics import EPS

Method = Literal["platt", "isotonic"]
# A member stays only if the out-of-fold log-likelihood it adds beside the others beats the
# BIC penalty of one more parameter (0.5 ln n nats): chance improvements of a noise member
# (its calibrator and weight are fitted on the same rows) stay far below that.


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True, slots=True)
class Calibrator:
    """Maps a raw probability to a calibrated one: Platt (a logistic on the raw logit) or
    isotonic (monotone steps; needs more rows)."""

    method: Method
    slope: float = 1.0
    intercept: float = 0.0
    isotonic: IsotonicRegression | None = None

    @classmethod
    def fit(cls, p: np.ndarray, y: np.ndarray, method: Method = "platt") -> Calibrator:
        if method == "isotonic":
            iso = IsotonicRegression(y_min=EPS, y_max=1 - EPS, out_of_bounds="clip")
            iso.fit(np.asarray(p, dtype=np.float64), y)
            return cls("isotonic", isotonic=iso)
        lr = LogisticRegression(C=1e4)  # nearly unregularised: two parameters, thousands of rows
        lr.fit(logit(p).reshape(-1, 1), y)
        return cls("platt", float(lr.coef_[0, 0]), float(lr.intercept_[0]))

    def __call__(self, p: np.ndarray) -> np.ndarray:
        if self.isotonic is not None:
            return np.asarray(self.isotonic.predict(np.asarray(p, dtype=np.float64)))
        return sigmoid(self.slope * logit(p) + self.intercept)


@dataclass(frozen=True, slots=True)
class Stack:
    """P = sigmoid(intercept + sum of weight * logit(calibrated member p)); weights >= 0."""

    weights: Mapping[str, float]
    intercept: float
    notes: Mapping[str, str]  # why a member got weight 0

    def combine(self, calibrated: Mapping[str, np.ndarray]) -> np.ndarray:
        z = np.full(len(next(iter(calibrated.values()))), self.intercept)
        for name, w in self.weights.items():
            if w > 0:
                z = z + w * logit(calibrated[name])
        return sigmoid(z)


def _log_loss(params: np.ndarray, z: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(sigmoid(params[0] + z @ params[1:]), EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _solve(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    start = np.concatenate([[0.0], np.full(z.shape[1], 1.0 / z.shape[1])])
    bounds = [(None, None)] + [(0.0, None)] * z.shape[1]
    return np.asarray(minimize(_log_loss, start, args=(z, y), bounds=bounds).x)


def _gain_nats(z: np.ndarray, y: np.ndarray, params: np.ndarray) -> np.ndarray:
    """For each column: how much total log-likelihood the stack loses without it."""
    full = _log_loss(params, z, y)
    out = []
    for i in range(z.shape[1]):
        rest = np.delete(z, i, axis=1)
        without = _solve(rest, y) if rest.shape[1] else np.array([_intercept(y)])
        out.append((_log_loss(without, rest, y) - full) * len(y))
    return np.asarray(out)


def _intercept(y: np.ndarray) -> float:
    base = float(np.clip(np.mean(y), EPS, 1 - EPS))
    return float(np.log(base / (1 - base)))


def fit_stack(calibrated: Mapping[str, np.ndarray], y: np.ndarray) -> Stack:
    """Non-negative weights minimising the out-of-fold log-loss. A member that ranks no better
    than chance out of fold, or adds less beside the others than the BIC penalty of its weight,
    gets weight 0 (the weakest first, then the rest refit) and the note says why."""
    notes: dict[str, str] = {}
    names: Sequence[str] = list(calibrated)
    live = []
    for name in names:
        auc = float(roc_auc_score(y, calibrated[name])) if len(np.unique(y)) == 2 else 0.5
        if auc <= 0.5:
            notes[name] = f"out-of-fold AUC {auc:.4f} is no better than chance"
        else:
            live.append(name)
    penalty = 0.5 * np.log(max(len(y), 2))
    while live:
        z = np.column_stack([logit(calibrated[n]) for n in live])
        solved = _solve(z, y)
        gains = _gain_nats(z, y, solved)
        weakest = int(np.argmin(gains))
        if gains[weakest] >= penalty:
            weights = dict(zip(live, (float(w) for w in solved[1:]), strict=True))
            return Stack({n: weights.get(n, 0.0) for n in names}, float(solved[0]), notes)
        notes[live[weakest]] = (
            f"adds {gains[weakest]:.1f} nats of out-of-fold likelihood beside the other "
            f"members, below the {penalty:.1f} one more weight must earn"
        )
        live.pop(weakest)
    return Stack({n: 0.0 for n in names}, _intercept(y), notes)
