"""Tree members: a few rows are predicted on one thread, with the same probabilities as a
large batch on the pool."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from core.features.registry import FEATURE_NAMES
from core.models import members
from core.models.members import FittedTrees


@pytest.fixture(scope="module", params=["xgboost", "xgboost early-stopped", "lightgbm"])
def fitted(request: pytest.FixtureRequest, rows: pd.DataFrame) -> tuple[FittedTrees, np.ndarray]:
    x = rows.loc[:, list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    y = rows["label"].to_numpy()
    if request.param == "xgboost early-stopped":
        # As a grid point is fitted (members.BoostedTrees): its rounds are the best's, fewer
        # than the trees it grew, and predictions use those only.
        model = xgb.XGBClassifier(
            n_estimators=200, max_depth=3, n_jobs=2, random_state=1, early_stopping_rounds=5
        )
        half = len(x) // 2
        model.fit(x[:half], y[:half], eval_set=[(x[half:], y[half:])], verbose=False)
        rounds = int(model.best_iteration) + 1
        assert rounds < model.get_booster().num_boosted_rounds()
        return FittedTrees(model, rounds, {}), x
    if request.param == "xgboost":
        model = xgb.XGBClassifier(n_estimators=30, max_depth=3, n_jobs=2, random_state=1)
    else:
        model = lgb.LGBMClassifier(n_estimators=30, num_leaves=7, n_jobs=2, verbose=-1)
    model.fit(x, y)
    return FittedTrees(model, 30, {}), x


def test_predict_when_few_rows_then_one_thread_gives_the_batch_probabilities(
    fitted: tuple[FittedTrees, np.ndarray],
) -> None:
    trees, x = fitted
    assert len(x) > members.FEW_ROWS  # the whole set goes to the pool
    batch = trees.predict(x, np.zeros(len(x)))
    few = np.concatenate([trees.predict(x[i : i + 7], np.zeros(7)) for i in range(0, len(x), 7)])
    np.testing.assert_array_equal(few, batch)
    assert 0.0 < batch.min() < batch.max() < 1.0  # a fitted model, not a constant
