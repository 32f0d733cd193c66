from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.features.registry import FEATURE_NAMES
from core.models.members import XGB_GRID, BoostedTrees, Rows
from core.models.training import EnsembleConfig, NotEnoughData, train_ensemble

from .conftest import COST, HORIZON

TREES_ONLY = EnsembleConfig(horizon=HORIZON, cost=COST, sequence=None, seed=7)
QUICK_XGB = BoostedTrees("xgboost", XGB_GRID[:1])


@dataclass(frozen=True)
class Scripted:
    """A fitted member whose output the test chooses: pure noise, or a copy of the truth."""

    p: np.ndarray
    rounds: int = 1
    params: dict[str, Any] = field(default_factory=dict)
    context: int = 0

    def predict(self, x: np.ndarray, segments: np.ndarray) -> np.ndarray:
        return np.resize(self.p, len(x))


@dataclass
class Noise:
    name: str = "noise"
    refits: list[int] = field(default_factory=list)

    def fit(self, train: Rows, validation: Rows, seed: int) -> Scripted:
        return Scripted(np.random.default_rng(seed).uniform(0.2, 0.8, 10_000))

    def refit(self, rows: Rows, fitted: Any, rounds: int, seed: int) -> Scripted:
        self.refits.append(len(rows.x))
        return Scripted(np.full(1, 0.5))


@dataclass
class Recorder:
    """XGBoost that remembers the newest row time it was fitted on, per call."""

    inner: BoostedTrees
    name: str = "xgboost"
    fitted_on: list[int] = field(default_factory=list)
    refit_rows: list[int] = field(default_factory=list)

    def fit(self, train: Rows, validation: Rows, seed: int) -> Any:
        self.fitted_on.append(len(train.x) + len(validation.x))
        return self.inner.fit(train, validation, seed)

    def refit(self, rows: Rows, fitted: Any, rounds: int, seed: int) -> Any:
        self.refit_rows.append(len(rows.x))
        return self.inner.refit(rows, fitted, rounds, seed)


@pytest.fixture(scope="module")
def leaky(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows plus a feature that knows the label 70 % of the time: a member with real skill,
    so the tests can tell a useful member from a useless one."""
    rng = np.random.default_rng(3)
    out = rows.copy()
    y = out["label"].to_numpy()
    out["hint"] = np.where(rng.random(len(y)) < 0.7, y, 1 - y)
    return out


HINTED = (*FEATURE_NAMES, "hint")


def test_train_ensemble_when_same_seed_then_same_out_of_fold_and_final_probabilities(
    rows: pd.DataFrame,
) -> None:
    a = train_ensemble(rows, FEATURE_NAMES, TREES_ONLY, [QUICK_XGB])
    b = train_ensemble(rows, FEATURE_NAMES, TREES_ONLY, [QUICK_XGB])
    np.testing.assert_array_equal(a.oof["p_ensemble"], b.oof["p_ensemble"])
    tail = rows.tail(100)
    np.testing.assert_array_equal(a.model.predict_proba(tail), b.model.predict_proba(tail))


def test_out_of_fold_when_future_labels_change_then_earlier_folds_unchanged(
    rows: pd.DataFrame,
) -> None:
    """No lookahead: a fold's predictions come from fits on its past only."""
    base = train_ensemble(rows, FEATURE_NAMES, TREES_ONLY, [QUICK_XGB])
    first_fold = base.oof[base.oof["fold"] == base.oof["fold"].min()]
    later = rows.index > first_fold.index.max()
    flipped = rows.copy()
    flipped.loc[later, "label"] = 1.0 - flipped.loc[later, "label"]
    again = train_ensemble(flipped, FEATURE_NAMES, TREES_ONLY, [QUICK_XGB])
    same = again.oof[again.oof["fold"] == base.oof["fold"].min()]
    np.testing.assert_array_equal(first_fold["p_xgboost"], same["p_xgboost"])
    assert not np.array_equal(base.oof["p_xgboost"], again.oof["p_xgboost"])


def test_train_ensemble_when_a_member_is_noise_then_weight_zero_and_said(
    leaky: pd.DataFrame,
) -> None:
    noise = Noise()
    out = train_ensemble(leaky, HINTED, TREES_ONLY, [QUICK_XGB, noise])
    assert out.model.weights["noise"] == 0.0
    assert out.model.weights["xgboost"] > 0
    assert "noise" in out.notes
    assert "noise" not in out.model.members  # never refit: a member without weight is dropped
    assert noise.refits == []
    assert out.metrics["noise_weight"] == 0.0


def test_train_ensemble_when_done_then_final_members_refit_on_every_row(
    leaky: pd.DataFrame,
) -> None:
    recorder = Recorder(QUICK_XGB)
    out = train_ensemble(leaky, HINTED, TREES_ONLY, [recorder])
    assert recorder.refit_rows == [len(leaky)]  # the newest rows too, not only a training split
    assert max(recorder.fitted_on) < len(leaky)
    assert len(out.oof) < len(leaky)
    assert out.oof.index.min() > leaky.index.min()


def test_train_ensemble_when_trained_then_metrics_calibrated_probabilities_and_payoff(
    rows: pd.DataFrame,
) -> None:
    out = train_ensemble(rows, FEATURE_NAMES, TREES_ONLY, [QUICK_XGB])
    for key in (
        "ensemble_oof_auc",
        "ensemble_oof_log_loss",
        "ensemble_oof_brier",
        "ensemble_oof_ece",
    ):
        assert np.isfinite(out.metrics[key])
    assert out.metrics["ensemble_oof_ece"] < 0.1
    p = out.model.predict_proba(rows.tail(300))
    assert ((p > 0) & (p < 1)).all()
    payoff = out.model.payoff
    assert payoff.gain > COST
    assert payoff.loss > 0
    assert payoff.cost == COST
    assert "policy" in out.notes


def test_train_ensemble_when_too_few_rows_then_not_enough_data(rows: pd.DataFrame) -> None:
    with pytest.raises(NotEnoughData):
        train_ensemble(rows.head(40), FEATURE_NAMES, TREES_ONLY, [QUICK_XGB])


def test_train_ensemble_when_labels_are_noise_then_not_tradeable(rows: pd.DataFrame) -> None:
    shuffled = rows.copy()
    rng = np.random.default_rng(0)
    shuffled["label"] = rng.permutation(shuffled["label"].to_numpy())
    out = train_ensemble(shuffled, FEATURE_NAMES, replace(TREES_ONLY, seed=1), [QUICK_XGB])
    assert not out.model.tradeable
    assert "abstains" in out.notes["policy"]
    # The brief tells an LLM agent how far to trust the model: its out-of-fold quality.
    quality = out.model.quality
    assert quality["oof_auc"] == out.metrics["ensemble_oof_auc"]
    assert set(quality) == {"oof_auc", "oof_brier", "oof_entries", "oof_mean_net_return"}


def test_tradeable_when_rows_are_missing_then_trades_spaced_by_time_not_rows() -> None:
    from datetime import timedelta

    from core.models.policy import Payoff
    from core.models.training import _tradeable

    hours = [0, 1, 2, 6, 7, 8, 9, 10]  # 03:00-05:00 missing
    idx = pd.DatetimeIndex(
        [pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=h) for h in hours]
    )
    oof = pd.DataFrame({"symbol": "A", "p_ensemble": 0.9, "forward_return": 0.01}, index=idx)
    _, why, trades = _tradeable(oof, Payoff(gain=0.02, loss=0.01, cost=0.001), timedelta(hours=4))
    assert len(trades) == 3
    # Entries at 00:00, 06:00 (>= 04:00) and 10:00 (>= 10:00): three, not one per 4 rows (two).
    assert why.startswith("3 out-of-fold entries")
