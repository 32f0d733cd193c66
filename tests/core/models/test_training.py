from __future__ import annotations

import pandas as pd
import pytest

from core.features.registry import FEATURE_NAMES
from core.models.dataset import training_rows
from core.models.training import NotEnoughData, fit_ensemble, split_metrics, time_split

GAP = pd.Timedelta(hours=4)


@pytest.fixture(scope="module")
def dataset(btc_1h: pd.DataFrame, eth_1h: pd.DataFrame) -> pd.DataFrame:
    return training_rows(
        {"BTC/USDT": btc_1h.head(2500), "ETH/USDT": eth_1h.head(2500)}, "BTC/USDT", 4, 0.002
    )


def test_time_split_when_real_rows_then_ordered_with_gap_of_label_horizon(
    dataset: pd.DataFrame,
) -> None:
    s = time_split(dataset, 0.15, 0.15, GAP)
    assert s.train.index.max() + GAP < s.validation.index.min()
    assert s.validation.index.max() + GAP < s.test.index.min()
    assert "label" not in FEATURE_NAMES


def test_time_split_when_too_few_rows_then_not_enough_data(dataset: pd.DataFrame) -> None:
    with pytest.raises(NotEnoughData):
        time_split(dataset.head(50), 0.15, 0.15, GAP)


def test_fit_ensemble_when_same_seed_then_same_probabilities(dataset: pd.DataFrame) -> None:
    s = time_split(dataset, 0.15, 0.15, GAP)
    a = fit_ensemble(s.train, FEATURE_NAMES, 7).predict_proba(s.validation)
    b = fit_ensemble(s.train, FEATURE_NAMES, 7).predict_proba(s.validation)
    assert (a == b).all()
    assert ((a >= 0) & (a <= 1)).all()


def test_split_metrics_when_trained_then_every_member_split_metric_present(
    dataset: pd.DataFrame,
) -> None:
    s = time_split(dataset, 0.15, 0.15, GAP)
    m = split_metrics(fit_ensemble(s.train, FEATURE_NAMES, 7), s)
    for member in ("xgboost", "lightgbm", "ensemble"):
        for split in ("train", "validation", "test"):
            for metric in ("auc", "log_loss", "accuracy"):
                assert f"{member}_{split}_{metric}" in m


def test_training_rows_when_candles_filled_then_labels_touching_them_excluded(
    btc_1h: pd.DataFrame,
) -> None:
    candles = btc_1h.head(700).copy()
    candles["is_filled"] = False
    candles.loc[600, "is_filled"] = True
    rows = training_rows({"BTC/USDT": candles}, "BTC/USDT", 4, 0.002)
    times = candles["open_time"]
    excluded = set(times.iloc[596:601])  # labels whose window [t, t+4] contains row 600
    assert excluded.isdisjoint(rows.index)
    assert times.iloc[595] in rows.index
    assert times.iloc[601] in rows.index
