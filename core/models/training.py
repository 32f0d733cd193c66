"""Time-ordered splits, gradient-boosted classifiers and their evaluation. No I/O here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from core.errors import FatalError


class NotEnoughData(FatalError, ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Splits:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    def ranges(self) -> dict[str, tuple[str, str]]:
        return {
            name: (str(part.index.min()), str(part.index.max()))
            for name, part in (
                ("train", self.train),
                ("validation", self.validation),
                ("test", self.test),
            )
        }


def time_split(
    dataset: pd.DataFrame, validation_fraction: float, test_fraction: float, gap: pd.Timedelta
) -> Splits:
    """Split rows by time: train < validation < test, each boundary separated by `gap`.

    The gap is at least the label horizon, so no training label overlaps a validation row.
    """
    times = dataset.index.unique().sort_values()
    if len(times) < 100:
        raise NotEnoughData(f"need at least 100 distinct times to split, got {len(times)}")
    val_start = times[int(len(times) * (1 - validation_fraction - test_fraction))]
    test_start = times[int(len(times) * (1 - test_fraction))]
    index = dataset.index
    train = dataset[index < val_start - gap]
    validation = dataset[(index >= val_start) & (index < test_start - gap)]
    test = dataset[index >= test_start]
    for name, part in (("train", train), ("validation", validation), ("test", test)):
        if part.empty or part["label"].nunique() < 2:
            raise NotEnoughData(f"{name} split has no rows or a single class")
    return Splits(train, validation, test)


def evaluate(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return {
        "auc": float(roc_auc_score(labels, clipped)),
        "log_loss": float(log_loss(labels, clipped, labels=[0, 1])),
        "accuracy": float(accuracy_score(labels, clipped >= 0.5)),
    }


@dataclass
class EnsembleClassifier:
    """Averages P(label=1) of its members; the one object registered in MLflow."""

    features: tuple[str, ...]
    members: dict[str, object] = field(default_factory=dict)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        x = frame.loc[:, list(self.features)].to_numpy(dtype=np.float32)
        probs = [m.predict_proba(x)[:, 1] for m in self.members.values()]  # type: ignore[attr-defined]
        return np.mean(probs, axis=0)

    def member_proba(self, name: str, frame: pd.DataFrame) -> np.ndarray:
        x = frame.loc[:, list(self.features)].to_numpy(dtype=np.float32)
        return self.members[name].predict_proba(x)[:, 1]  # type: ignore[attr-defined]


XGB_PARAMS = {
    "n_estimators": 300,
    "max_depth": 3,
    "learning_rate": 0.03,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 20,
    "reg_lambda": 5.0,
    "tree_method": "hist",
    "n_jobs": 2,
}
LGBM_PARAMS = {
    "n_estimators": 300,
    "num_leaves": 15,
    "learning_rate": 0.03,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "min_child_samples": 50,
    "reg_lambda": 5.0,
    "n_jobs": 2,
    "verbose": -1,
}


def fit_ensemble(train: pd.DataFrame, features: Sequence[str], seed: int) -> EnsembleClassifier:
    x = train.loc[:, list(features)].to_numpy(dtype=np.float32)
    y = train["label"].to_numpy(dtype=np.int32)
    xgb_model = xgb.XGBClassifier(**XGB_PARAMS, random_state=seed)
    xgb_model.fit(x, y)
    lgbm_model = lgb.LGBMClassifier(**LGBM_PARAMS, random_state=seed)
    lgbm_model.fit(x, y)
    return EnsembleClassifier(tuple(features), {"xgboost": xgb_model, "lightgbm": lgbm_model})


def split_metrics(model: EnsembleClassifier, splits: Splits) -> dict[str, float]:
    """Metrics as flat MLflow keys: '<member|ensemble>_<split>_<metric>'."""
    out: dict[str, float] = {}
    for split_name, part in (
        ("train", splits.train),
        ("validation", splits.validation),
        ("test", splits.test),
    ):
        labels = part["label"].to_numpy()
        for member in model.members:
            for k, v in evaluate(model.member_proba(member, part), labels).items():
                out[f"{member}_{split_name}_{k}"] = v
        for k, v in evaluate(model.predict_proba(part), labels).items():
            out[f"ensemble_{split_name}_{k}"] = v
    return out
