from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from core.features.registry import FEATURE_NAMES, feature_set_version
from core.models.dataset import training_rows
from core.models.training import EnsembleClassifier, fit_ensemble, split_metrics, time_split
from registry.mlflow_registry import (
    CHALLENGER,
    CHAMPION,
    ChampionCache,
    FeatureSetMismatch,
    NoChampion,
    log_and_register,
    promote_if_better,
)

NAME = "test-direction"


class ScriptedMember:
    """Scores the validation rows as told: a model whose quality the test chooses."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = np.resize(self.scores, len(x))
        return np.column_stack([1 - p, p])


@pytest.fixture(scope="module")
def splits(btc_1h: pd.DataFrame):  # type: ignore[no-untyped-def]
    data = training_rows({"BTC/USDT": btc_1h.head(2000)}, "BTC/USDT", 4, 0.002)
    return time_split(data, 0.15, 0.15, pd.Timedelta(hours=4))


def register(model: EnsembleClassifier, splits, tag_fs: str | None = None):  # type: ignore[no-untyped-def]
    tags = {"feature_set_version": tag_fs or feature_set_version(), "data_range": "test"}
    return log_and_register(
        model,
        NAME,
        {"seed": 1},
        split_metrics(model, splits),
        tags,
        splits.validation.loc[:, list(FEATURE_NAMES)].head(20),
    )


def scripted(scores: np.ndarray) -> EnsembleClassifier:
    return EnsembleClassifier(FEATURE_NAMES, {"scripted": ScriptedMember(scores)})


def test_promotion_when_first_then_champion_when_worse_then_challenger_when_better_then_champion(
    mlflow_store: str,
    splits,  # type: ignore[no-untyped-def]
) -> None:
    client = MlflowClient()
    labels = splits.validation["label"].to_numpy()

    v1 = register(fit_ensemble(splits.train, FEATURE_NAMES, 3), splits)
    p1 = promote_if_better(v1, splits.validation, FEATURE_NAMES)
    assert p1.promoted
    assert "first version" in p1.reason
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == v1.version

    worse = register(scripted(1.0 - labels), splits)  # ranks every row backwards: AUC 0
    p2 = promote_if_better(worse, splits.validation, FEATURE_NAMES)
    assert not p2.promoted
    assert "does not beat" in p2.reason
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == v1.version
    assert str(client.get_model_version_by_alias(NAME, CHALLENGER).version) == worse.version
    assert client.get_model_version(NAME, worse.version).tags["promotion"] == "rejected"

    better = register(scripted(labels * 0.8 + 0.1), splits)  # ranks perfectly: AUC 1
    p3 = promote_if_better(better, splits.validation, FEATURE_NAMES)
    assert p3.promoted
    assert "beats" in p3.reason
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == better.version
    run = client.get_run(better.run_id)
    assert run.data.tags["feature_set_version"] == feature_set_version()
    assert "ensemble_validation_auc" in run.data.metrics
    assert run.data.params["seed"] == "1"


def test_champion_cache_when_alias_moves_then_reloads_once(mlflow_store: str, splits) -> None:  # type: ignore[no-untyped-def]
    cache = ChampionCache(NAME, feature_set_version())
    with pytest.raises(NoChampion):
        cache.get()
    v1 = register(fit_ensemble(splits.train, FEATURE_NAMES, 3), splits)
    promote_if_better(v1, splits.validation, FEATURE_NAMES)
    first = cache.get()
    assert cache.get() is first
    assert cache.loads == 1
    probs = first.predict(splits.validation.loc[:, list(FEATURE_NAMES)])
    assert probs.shape == (len(splits.validation),)
    assert ((probs > 0) & (probs < 1)).all()
    v2 = register(fit_ensemble(splits.train, FEATURE_NAMES, 4), splits)
    MlflowClient().set_registered_model_alias(NAME, CHAMPION, v2.version)
    assert cache.get().version == v2.version
    assert cache.loads == 2


def test_champion_cache_when_feature_set_differs_then_refuses(mlflow_store: str, splits) -> None:  # type: ignore[no-untyped-def]
    v1 = register(fit_ensemble(splits.train, FEATURE_NAMES, 3), splits, tag_fs="0123456789abcdef")
    MlflowClient().set_registered_model_alias(NAME, CHAMPION, v1.version)
    with pytest.raises(FeatureSetMismatch, match="0123456789abcdef"):
        ChampionCache(NAME, feature_set_version()).get()
