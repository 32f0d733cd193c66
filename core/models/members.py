"""The ensemble's members behind one shape: fit with early stopping on a validation fold, then
refit on more data for the number of rounds (trees or epochs) that fold chose.

Gradient-boosted members search a small grid of regularisation settings and keep the one with
the lowest validation log-loss; the torch members (core.models.sequence) stop on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import lightgbm as lgb
import numpy as np
import xgboost as xgb
from sklearn.metrics import log_loss

if TYPE_CHECKING:  # torch behind it (~300 MB, 1.6 s): loaded only when a sequence member is
    from core.models.sequence import SequenceClassifier, SequenceConfig

EARLY_STOPPING_ROUNDS = 40
MAX_ROUNDS = 600


@dataclass(frozen=True, slots=True)
class Rows:
    """A member's input: features (float32, one row per candle), labels, and the segment (one
    symbol's run of candles) each row belongs to, in time order within a segment."""

    x: np.ndarray
    y: np.ndarray
    segments: np.ndarray

    def __post_init__(self) -> None:
        if not len(self.x) == len(self.y) == len(self.segments):
            raise ValueError(
                f"rows disagree in length: x {len(self.x)}, y {len(self.y)}, "
                f"segments {len(self.segments)}"
            )


class Fitted(Protocol):
    rounds: int  # trees or epochs: what a refit on more data reuses
    params: Mapping[str, Any]

    @property
    def context(self) -> int:
        """Rows of a symbol's past each prediction reads (0: the row alone)."""
        ...

    def predict(self, x: np.ndarray, segments: np.ndarray) -> np.ndarray: ...


class Member(Protocol):
    name: str

    def fit(self, train: Rows, validation: Rows, seed: int) -> Fitted: ...

    def refit(self, rows: Rows, fitted: Fitted, rounds: int, seed: int) -> Fitted: ...


# -- gradient-boosted trees ---------------------------------------------------------------------

XGB_GRID: tuple[dict[str, Any], ...] = (
    {"max_depth": 2, "min_child_weight": 50, "reg_lambda": 10.0, "gamma": 0.0},
    {"max_depth": 3, "min_child_weight": 20, "reg_lambda": 5.0, "gamma": 0.0},
    {"max_depth": 4, "min_child_weight": 100, "reg_lambda": 20.0, "gamma": 1.0},
)
XGB_FIXED: dict[str, Any] = {
    "learning_rate": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.6,
    "tree_method": "hist",
    "eval_metric": "logloss",
    "n_jobs": 2,
}
LGBM_GRID: tuple[dict[str, Any], ...] = (
    {"num_leaves": 7, "min_child_samples": 100, "reg_lambda": 10.0},
    {"num_leaves": 15, "min_child_samples": 50, "reg_lambda": 5.0},
    {"num_leaves": 31, "min_child_samples": 200, "reg_lambda": 20.0},
)
LGBM_FIXED: dict[str, Any] = {
    "learning_rate": 0.05,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.6,
    "n_jobs": 2,
    "verbose": -1,
}


# Up to this many rows a tree member predicts on one thread. An OpenMP pool woken for a live
# decision's few rows costs more than it saves, and XGBoost's pool, still spinning after its
# call, took the cores from LightGBM's call that follows it in the ensemble: one row through
# both took 6.4 ms on 2 cores, 0.8 ms on one thread each (same probabilities).
FEW_ROWS = 1_000


@dataclass(frozen=True, slots=True)
class FittedTrees:
    model: Any  # an xgboost or lightgbm sklearn classifier
    rounds: int
    params: Mapping[str, Any]
    validation_log_loss: float = float("nan")
    context: int = 0

    def predict(self, x: np.ndarray, segments: np.ndarray) -> np.ndarray:
        if len(x) > FEW_ROWS:
            return np.asarray(self.model.predict_proba(x)[:, 1], dtype=np.float64)
        return _on_one_thread(self.model, x, self.rounds)


def _on_one_thread(model: Any, x: np.ndarray, rounds: int) -> np.ndarray:
    """The booster's own call, as predict_proba makes it (P(1) of a binary objective): the
    sklearn wrappers' checks cost more than a live decision's few rows. XGBoost's wrapper
    predicts with the trees up to early stopping's best round, or all of a refit's: `rounds`
    either way."""
    if isinstance(model, lgb.LGBMClassifier):
        return np.asarray(model.booster_.predict(x, num_threads=1), dtype=np.float64)
    with xgb.config_context(nthread=1):  # thread-local: other threads keep theirs
        p = model.get_booster().inplace_predict(
            x, iteration_range=(0, rounds), missing=model.missing
        )
    return np.asarray(p, dtype=np.float64)


def _xgb(params: Mapping[str, Any], rounds: int, seed: int, stop: bool) -> xgb.XGBClassifier:
    extra = {"early_stopping_rounds": EARLY_STOPPING_ROUNDS} if stop else {}
    return xgb.XGBClassifier(**XGB_FIXED, **params, n_estimators=rounds, random_state=seed, **extra)


def _lgbm(params: Mapping[str, Any], rounds: int, seed: int) -> lgb.LGBMClassifier:
    return lgb.LGBMClassifier(**LGBM_FIXED, **params, n_estimators=rounds, random_state=seed)


@dataclass(frozen=True, slots=True)
class BoostedTrees:
    """XGBoost or LightGBM: each grid point early-stops on the validation fold; the best by
    validation log-loss wins."""

    name: str  # "xgboost" | "lightgbm"
    grid: Sequence[Mapping[str, Any]]

    def _fit_one(self, params: Mapping[str, Any], train: Rows, val: Rows, seed: int) -> FittedTrees:
        if self.name == "xgboost":
            model = _xgb(params, MAX_ROUNDS, seed, stop=True)
            model.fit(train.x, train.y, eval_set=[(val.x, val.y)], verbose=False)
            rounds = int(model.best_iteration) + 1
        else:
            model = _lgbm(params, MAX_ROUNDS, seed)
            stopping = lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)
            model.fit(train.x, train.y, eval_X=(val.x,), eval_y=(val.y,), callbacks=[stopping])
            rounds = int(model.best_iteration_ or MAX_ROUNDS)
        p = np.clip(model.predict_proba(val.x)[:, 1], 1e-7, 1 - 1e-7)
        loss = float(log_loss(val.y, p, labels=[0, 1]))
        return FittedTrees(model, rounds, dict(params), loss)

    def fit(self, train: Rows, validation: Rows, seed: int) -> FittedTrees:
        tried = [self._fit_one(p, train, validation, seed) for p in self.grid]
        return min(tried, key=lambda f: f.validation_log_loss)

    def refit(self, rows: Rows, fitted: Fitted, rounds: int, seed: int) -> FittedTrees:
        if self.name == "xgboost":
            model: Any = _xgb(fitted.params, rounds, seed, stop=False)
            model.fit(rows.x, rows.y, verbose=False)
        else:
            model = _lgbm(fitted.params, rounds, seed)
            model.fit(rows.x, rows.y)
        return FittedTrees(model, rounds, fitted.params)


# -- torch sequence models ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FittedSequence:
    model: SequenceClassifier
    rounds: int
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def context(self) -> int:
        return int(self.model.config.window) - 1

    def predict(self, x: np.ndarray, segments: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_proba(x, segments)[:, 1], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class SequenceNet:
    """The LSTM or the Transformer over the last `config.window` candles of a symbol."""

    name: str  # "lstm" | "transformer"
    config: SequenceConfig

    def fit(self, train: Rows, validation: Rows, seed: int) -> FittedSequence:
        from core.models.sequence import SequenceClassifier

        model = SequenceClassifier(self.name, self.config, seed)
        model.fit(
            train.x, train.y, train.segments, (validation.x, validation.y, validation.segments)
        )
        return FittedSequence(model, max(1, int(model.best_epoch)))

    def refit(self, rows: Rows, fitted: Fitted, rounds: int, seed: int) -> FittedSequence:
        from core.models.sequence import SequenceClassifier

        model = SequenceClassifier(self.name, self.config, seed)
        model.fit(rows.x, rows.y, rows.segments, epochs=rounds)
        return FittedSequence(model, rounds)


def default_members(sequence: SequenceConfig | None) -> list[Member]:
    """The four members; without a sequence config only the two tree models (a quick run)."""
    members: list[Member] = [BoostedTrees("xgboost", XGB_GRID), BoostedTrees("lightgbm", LGBM_GRID)]
    if sequence is not None:
        members += [SequenceNet("lstm", sequence), SequenceNet("transformer", sequence)]
    return members
