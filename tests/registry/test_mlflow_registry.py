from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from core.features.registry import FEATURE_NAMES, feature_set_version
from core.models.dataset import LabelSpec, training_rows
from core.models.members import XGB_GRID, BoostedTrees
from core.models.promotion import PromotionEvidence, PromotionPolicy
from core.models.training import EnsembleConfig, TrainedEnsemble, train_ensemble
from registry.mlflow_registry import (
    CHALLENGER,
    CHAMPION,
    PROMOTION_EXPERIMENT,
    FeatureSetMismatch,
    NoChampion,
    log_and_register,
    promote_if_better,
)
from registry.model_cache import CachedChampion, ModelCache

NAME = "test-direction"
HORIZON = timedelta(hours=4)
POLICY = PromotionPolicy(margin=0.001, min_rows=100, max_ece=0.1, max_latency_ms=2000)


@pytest.fixture(scope="module")
def rows(btc_1h: pd.DataFrame) -> pd.DataFrame:
    return training_rows({"BTC/USDT": btc_1h.head(3000)}, "BTC/USDT", LabelSpec(HORIZON, 0.003))


@pytest.fixture(scope="module")
def trained(rows: pd.DataFrame) -> TrainedEnsemble:
    """A real ensemble trained on the first 2,000 rows (its cut); rows after it are fresh."""
    cfg = EnsembleConfig(horizon=HORIZON, cost=0.003, sequence=None, seed=3)
    return train_ensemble(
        rows.iloc[:2000], FEATURE_NAMES, cfg, [BoostedTrees("xgboost", XGB_GRID[:1])]
    )


def register(trained: TrainedEnsemble, rows: pd.DataFrame, tag_fs: str | None = None):  # type: ignore[no-untyped-def]
    cut = rows.index[2000 - 1] + pd.Timedelta(HORIZON)
    tags = {
        "feature_set_version": tag_fs or feature_set_version(),
        "data_range": f"{rows.index[0]} .. {rows.index[1999]}",
        "training_cut": cut.isoformat(),
    }
    metrics = {k: v for k, v in trained.metrics.items() if np.isfinite(v)}
    example = rows.loc[:, list(FEATURE_NAMES)].head(20)
    return log_and_register(trained.model, NAME, {"seed": 3}, metrics, tags, example)


def evidence(rows: pd.DataFrame, p: np.ndarray, fs: str | None = None) -> PromotionEvidence:
    """Scripted challenger probabilities on the rows after the champion's cut."""
    fresh = rows.iloc[2100:].copy()
    fresh["p_ensemble"] = np.resize(p, len(fresh))
    return PromotionEvidence(fresh, fresh.index[0].to_pydatetime(), fs or feature_set_version())


def test_promotion_when_first_then_champion_when_worse_then_challenger_when_better_then_champion(
    mlflow_store: str, rows: pd.DataFrame, trained: TrainedEnsemble
) -> None:
    client = MlflowClient()
    labels = rows["label"].to_numpy()[2100:]

    v1 = register(trained, rows)
    p1 = promote_if_better(
        v1, evidence(rows, trained.model.predict_proba(rows.iloc[2100:])), POLICY
    )
    assert p1.promoted, p1.reason
    assert "first version" in p1.reason
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == v1.version

    worse = register(trained, rows)
    p2 = promote_if_better(worse, evidence(rows, 0.9 - 0.8 * labels), POLICY)  # backwards
    assert not p2.promoted
    assert "does not beat" in p2.reason
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == v1.version
    assert str(client.get_model_version_by_alias(NAME, CHALLENGER).version) == worse.version
    assert client.get_model_version(NAME, worse.version).tags["promotion"] == "rejected"

    better = register(trained, rows)
    p3 = promote_if_better(better, evidence(rows, labels * 0.8 + 0.1), POLICY)
    assert p3.promoted
    assert "beats" in p3.reason
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == better.version
    old = client.get_model_version(NAME, v1.version).tags
    assert "promotion" not in old  # the alias moved: its stale tags are gone
    assert old["retired_by"] == better.version
    run = client.get_run(better.run_id)
    assert run.data.tags["feature_set_version"] == feature_set_version()
    assert "ensemble_oof_auc" in run.data.metrics


def test_promotion_when_decided_then_logged_as_tagged_run_with_numbers(
    mlflow_store: str, rows: pd.DataFrame, trained: TrainedEnsemble
) -> None:
    labels = rows["label"].to_numpy()[2100:]
    v1 = register(trained, rows)
    promote_if_better(v1, evidence(rows, trained.model.predict_proba(rows.iloc[2100:])), POLICY)
    v2 = register(trained, rows)
    promote_if_better(v2, evidence(rows, labels * 0.8 + 0.1), POLICY)
    exp = mlflow.get_experiment_by_name(PROMOTION_EXPERIMENT)
    runs = MlflowClient().search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    latest = runs[0]
    assert latest.data.tags["challenger_version"] == v2.version
    assert latest.data.tags["champion_before"] == v1.version
    assert latest.data.tags["decision"] == "promoted"
    assert latest.data.tags["gate_latency"].startswith("pass")
    assert latest.data.metrics["fresh_rows"] == len(rows) - 2100
    assert latest.data.metrics["log_loss_gain"] > POLICY.margin


def test_promotion_when_feature_set_differs_then_gate_refuses_even_first_version(
    mlflow_store: str, rows: pd.DataFrame, trained: TrainedEnsemble
) -> None:
    v1 = register(trained, rows)
    out = promote_if_better(v1, evidence(rows, 0.5, fs="0123456789abcdef"), POLICY)
    assert not out.promoted
    assert "feature_set" in out.reason
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, CHALLENGER).version) == v1.version
    with pytest.raises(Exception, match="alias"):
        client.get_model_version_by_alias(NAME, CHAMPION)


def test_champion_cache_when_alias_moves_then_reloads_once(
    mlflow_store: str, rows: pd.DataFrame, trained: TrainedEnsemble
) -> None:
    cache = CachedChampion(ModelCache(feature_set_version()), NAME, feature_set_version())
    with pytest.raises(NoChampion):
        cache.get()
    v1 = register(trained, rows)
    MlflowClient().set_registered_model_alias(NAME, CHAMPION, v1.version)
    first = cache.get()
    assert cache.get() is first
    assert cache.cache.stats().loads == 1
    probs = first.predict(rows.loc[:, list(FEATURE_NAMES)].tail(100))
    assert probs.shape == (100,)
    assert ((probs > 0) & (probs < 1)).all()
    assert first.tradeable == trained.model.tradeable
    np.testing.assert_allclose(first.edge(probs), trained.model.expected_edge(probs))
    v2 = register(trained, rows)
    MlflowClient().set_registered_model_alias(NAME, CHAMPION, v2.version)  # by hand, in the UI
    assert cache.get().version == v2.version
    assert cache.cache.stats().loads == 2


def test_champion_cache_when_feature_set_differs_then_refuses(
    mlflow_store: str, rows: pd.DataFrame, trained: TrainedEnsemble
) -> None:
    v1 = register(trained, rows, tag_fs="0123456789abcdef")
    MlflowClient().set_registered_model_alias(NAME, CHAMPION, v1.version)
    with pytest.raises(FeatureSetMismatch, match="0123456789abcdef"):
        CachedChampion(ModelCache(feature_set_version()), NAME, feature_set_version()).get()


LOAD_ALONE = """
import importlib.util, json, sys
# Forget this project: no editable-install finder, no checkout on the path.
sys.meta_path = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path = [p for p in sys.path if p.rstrip("/") != sys.argv[3]]
assert importlib.util.find_spec("core") is None, "the project is still importable"
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
rows = pd.read_json(sys.argv[2], orient="split")
print(json.dumps([float(x) for x in model.predict(rows)]))
"""


def test_pyfunc_when_loaded_in_a_process_without_the_project_then_same_predictions(
    mlflow_store: str, rows: pd.DataFrame, trained: TrainedEnsemble, tmp_path: Path
) -> None:
    v1 = register(trained, rows)
    local = mlflow.artifacts.download_artifacts(
        f"models:/{NAME}/{v1.version}", dst_path=str(tmp_path / "m")
    )
    batch = rows.loc[:, list(FEATURE_NAMES)].tail(30)
    (tmp_path / "rows.json").write_text(batch.to_json(orient="split", date_format="iso"))
    project = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(
        [sys.executable, "-I", "-c", LOAD_ALONE, local, str(tmp_path / "rows.json"), project],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(got, trained.model.predict_proba(batch), rtol=1e-6)


def test_promotion_when_the_champion_cannot_be_scored_then_kept_and_challenger_set(
    mlflow_store: str, rows: pd.DataFrame, trained: TrainedEnsemble
) -> None:
    """A champion of another layout (here: a feature the rows lack) is kept, the new version
    still becomes challenger, and the reason names the failure: nothing half-done."""
    renamed = ("retired_feature", *trained.model.features[1:])
    odd = dataclasses.replace(trained.model, features=renamed)
    example = rows.loc[:, list(FEATURE_NAMES)].head(20)
    example = example.rename(columns={FEATURE_NAMES[0]: "retired_feature"})
    tags = {
        "feature_set_version": feature_set_version(),
        "data_range": f"{rows.index[0]} .. {rows.index[1999]}",
    }
    v1 = log_and_register(odd, NAME, {}, {}, tags, example)
    MlflowClient().set_registered_model_alias(NAME, CHAMPION, v1.version)
    v2 = register(trained, rows)
    out = promote_if_better(v2, evidence(rows, rows["label"].to_numpy()[2100:] * 0.8 + 0.1), POLICY)
    client = MlflowClient()
    assert not out.promoted
    assert "could not be scored" in out.reason
    assert "retired_feature" in out.reason
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == v1.version
    assert str(client.get_model_version_by_alias(NAME, CHALLENGER).version) == v2.version
    assert client.get_model_version(NAME, v2.version).tags["promotion"] == "rejected"
