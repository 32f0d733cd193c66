"""MLflow: log a trained ensemble, register it, move `champion` only when it wins, load by alias.

Implements core.ports' ModelRegistry (MlflowRegistry) and Model (ServedModel); the champion
source is registry.model_cache.CachedChampion."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from core.errors import FatalError, RetryableError
from core.models.ensemble import StackedEnsemble, quality_of
from core.models.promotion import (
    Gate,
    PromotionEvidence,
    PromotionPolicy,
    Verdict,
    fresh_rows,
    gates,
    verdict,
)
from core.ports import Promotion, Registered

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
EXPERIMENT = "tradeflow-training"
PROMOTION_EXPERIMENT = "tradeflow-promotion"
# Known up front: inferring them costs MLflow several seconds per log_model.
PIP_REQUIREMENTS = [
    "torch==2.13.0",
    "xgboost-cpu==3.2.0",
    "lightgbm==4.7.0",
    "pandas==2.3.3",
    "scikit-learn",
    "scipy",
    "numpy",
]
# The packages the pickled model needs beside its pip requirements: shipped inside the model,
# so `mlflow.pyfunc.load_model` works in a process that has never seen this project.
CODE_PATHS = [str(Path(__file__).resolve().parents[1] / p) for p in ("core", "registry")]


class RegistryError(FatalError):
    pass


class RegistryUnavailable(RetryableError):
    """The tracking server did not answer (or answered an error): try again later."""


# MLflow's answers meaning "no such model or alias", as opposed to "could not ask".
NOT_THERE = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


class NoChampion(RegistryError):
    pass


class FeatureSetMismatch(RegistryError):
    pass


class EnsemblePyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: predict returns the calibrated P(label = 1) for each row. Rows of one
    symbol in time order (a `symbol` column or index level separates symbols); the sequence
    members read the rows before each one."""

    def __init__(self, model: StackedEnsemble) -> None:
        self.model = model

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return self.model.predict_proba(model_input)


def configure(tracking_uri: str, artifacts_dir: Path) -> None:
    """Point MLflow at the store and make sure the experiment keeps artifacts under var/."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        artifacts_dir.mkdir(parents=True, exist_ok=True)
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts_dir.resolve().as_uri())
    mlflow.set_experiment(EXPERIMENT)


class MlflowRegistry:
    """The model registry port over the configured MLflow store."""

    def register(
        self,
        model: StackedEnsemble,
        name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        example: pd.DataFrame,
    ) -> Registered:
        return log_and_register(model, name, dict(params), dict(metrics), dict(tags), example)

    def promote_if_better(
        self, registered: Registered, evidence: PromotionEvidence, policy: PromotionPolicy
    ) -> Promotion:
        return promote_if_better(registered, evidence, policy)

    def log_run(
        self,
        experiment: str,
        run_name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        files: Sequence[Path],
    ) -> str:
        return log_run(experiment, run_name, params, metrics, tags, files)

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        """The version's tags over its training run's (range tags live on the run)."""
        mv, run = _version_and_run(name, version)
        return {**run.data.tags, **mv.tags}

    def run_metrics(self, name: str, version: str) -> dict[str, float]:
        return dict(_version_and_run(name, version)[1].data.metrics)

    def attach(
        self, name: str, version: str, folder: str, files: Sequence[Path], tags: Mapping[str, str]
    ) -> str:
        return attach_to_version(name, version, folder, files, tags)


def _version_and_run(name: str, version: str) -> tuple[Any, Any]:
    client = MlflowClient()
    try:
        mv = client.get_model_version(name, version)
        return mv, client.get_run(mv.run_id)
    except MlflowException as exc:
        if exc.error_code in NOT_THERE:
            raise NoChampion(f"model {name!r} has no version {version!r}") from exc
        raise RegistryUnavailable(f"model registry did not answer: {exc}") from exc


def log_run(
    experiment: str,
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    files: Sequence[Path],
) -> str:
    """A tracked run in `experiment` (created on first use) with its files as artifacts."""
    found = mlflow.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else mlflow.create_experiment(experiment)
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
            mlflow.log_params(dict(params))
            mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
            mlflow.set_tags(dict(tags))
            for path in files:
                mlflow.log_artifact(str(path))
    except MlflowException as exc:
        raise RegistryUnavailable(f"model registry did not answer: {exc}") from exc
    return str(run.info.run_id)


def log_and_register(
    model: StackedEnsemble,
    name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    example: pd.DataFrame,
) -> Registered:
    with mlflow.start_run(run_name=f"train-{name}") as run:
        mlflow.log_params(params)
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})  # AUC: NaN
        mlflow.set_tags(tags)
        mlflow.log_dict(_description(model), "ensemble.json")
        signature = infer_signature(example, model.predict_proba(example))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=EnsemblePyfunc(model),
            signature=signature,
            input_example=example.head(5),
            pip_requirements=PIP_REQUIREMENTS,
            code_paths=CODE_PATHS,
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key in ("feature_set_version", "data_range", "training_cut", "members", "tradeable"):
        if key in tags:
            client.set_model_version_tag(name, version, key, tags[key])
    return Registered(name, version, run.info.run_id)


def _description(model: StackedEnsemble) -> dict[str, Any]:
    payoff = model.payoff
    return {
        "features": list(model.features),
        "feature_set_version": model.feature_set_version,
        "weights": dict(model.weights),
        "zero_weight_notes": dict(model.stack.notes),
        "payoff": {"gain": payoff.gain, "loss": payoff.loss, "cost": payoff.cost},
        "tradeable": model.tradeable,
        "context_rows": model.context,
        "label": dict(model.label),
    }


def champion_version(client: MlflowClient, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def _cut_of(client: MlflowClient, name: str, version: str) -> datetime | None:
    """The last candle a version's labels read: its `training_cut` tag, or the end of its
    `data_range` for versions trained before that tag existed."""
    tags = client.get_model_version(name, version).tags
    raw = tags.get("training_cut") or tags.get("data_range", "").rpartition(" .. ")[2]
    try:
        return datetime.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def _latency_ms(model: ServedModel, one_row: pd.DataFrame) -> float:
    model.predict(one_row)  # the first call pays for lazy set-up, not what a decision waits
    times = []
    for _ in range(5):
        start = time.perf_counter()
        model.predict(one_row)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def promote_if_better(
    registered: Registered, evidence: PromotionEvidence, policy: PromotionPolicy
) -> Promotion:
    """`challenger` always moves to the new version, first, so no failure below leaves it
    without an alias; `champion` only when it passes the gates and beats the champion on rows
    neither trained on by the margin. The decision and its numbers are logged as a run of the
    promotion experiment."""
    client = MlflowClient()
    name, version = registered.name, registered.version
    client.set_registered_model_alias(name, CHALLENGER, version)
    current = champion_version(client, name)
    checks = _gates(client, registered, evidence, policy)
    fresh = evidence.oof
    if current is not None:
        fresh = fresh_rows(evidence.oof, _cut_of(client, name, current))
    passed = all(g.passed for g in checks)
    champion_p, failure = None, None
    if passed and current is not None and len(fresh):
        champion_p, failure = _score_champion(name, current, fresh)
    result = verdict(fresh, champion_p, current, checks, policy)
    if failure is not None:  # a champion that cannot be scored is kept, and the run says why
        result = Verdict(False, f"champion v{current} could not be scored: {failure}", {})
    _apply(client, registered, current, result)
    _log_promotion(registered, current, result, checks)
    return Promotion(result.promoted, version if result.promoted else str(current), result.reason)


def _served(name: str, version: str) -> ServedModel:
    """A version as the decision flow serves it (the ensemble's own input checks, each
    symbol's rows windowed apart), with no feature-set check: the gate makes that one."""
    return ServedModel(name, version, "", _load_version(name, version))


def _gates(
    client: MlflowClient,
    registered: Registered,
    evidence: PromotionEvidence,
    policy: PromotionPolicy,
) -> list[Gate]:
    new = _served(registered.name, registered.version)
    rows = evidence.oof.groupby("symbol", sort=False).tail(128).sort_index(kind="stable")
    tags = client.get_model_version(registered.name, registered.version).tags
    ece = float(client.get_run(registered.run_id).data.metrics.get("ensemble_oof_ece", np.nan))
    return gates(
        new.predict(rows),
        _latency_ms(new, evidence.oof.tail(1)),
        (tags.get("feature_set_version", ""), evidence.feature_set_version),
        ece,
        policy,
        len(evidence.oof),
    )


def _score_champion(
    name: str, version: str, fresh: pd.DataFrame
) -> tuple[np.ndarray | None, str | None]:
    """The champion's probabilities on the fresh rows, or why it could not give them (a model
    of an older layout, features it no longer finds)."""
    try:
        return _served(name, version).predict(fresh), None
    except (MlflowException, ValueError, KeyError, AttributeError, ModuleNotFoundError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]


def _apply(
    client: MlflowClient, registered: Registered, current: str | None, result: Verdict
) -> None:
    name, version = registered.name, registered.version
    if result.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
        if current is not None and current != version:
            # The alias moved: the old champion's promotion tags no longer describe it.
            for key in ("promotion", "promotion_reason"):
                client.delete_model_version_tag(name, current, key)
            client.set_model_version_tag(name, current, "retired_by", version)
    client.set_model_version_tag(
        name, version, "promotion", "champion" if result.promoted else "rejected"
    )
    client.set_model_version_tag(name, version, "promotion_reason", result.reason[:5000])
    client.set_tag(registered.run_id, "promotion", result.reason[:5000])


def _log_promotion(
    registered: Registered, current: str | None, result: Verdict, checks: Sequence[Gate]
) -> None:
    experiment = mlflow.get_experiment_by_name(PROMOTION_EXPERIMENT)
    experiment_id = (
        experiment.experiment_id if experiment else mlflow.create_experiment(PROMOTION_EXPERIMENT)
    )
    tags = {
        "model": registered.name,
        "challenger_version": registered.version,
        "champion_before": current or "none",
        "decision": "promoted" if result.promoted else "kept",
        "reason": result.reason[:5000],
        **{f"gate_{g.name}": f"{'pass' if g.passed else 'FAIL'}: {g.detail}" for g in checks},
    }
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"promotion-{registered.name}-v{registered.version}",
        nested=mlflow.active_run() is not None,
    ):
        mlflow.set_tags(tags)
        mlflow.log_metrics({k: v for k, v in result.metrics.items() if np.isfinite(v)})


def _load_version(name: str, version: str) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(f"models:/{name}/{version}")


@dataclass(frozen=True, slots=True)
class ServedModel:
    name: str
    version: str
    feature_set_version: str
    model: mlflow.pyfunc.PyFuncModel

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        # The ensemble checks its own input (every feature present and finite, named when
        # not): MLflow's schema check on top costs ~4 ms of a ~1 ms one-row prediction.
        ensemble = self.ensemble
        if ensemble is not None:
            return np.asarray(ensemble.predict_proba(features), dtype=np.float64)
        return np.asarray(self.model.predict(features), dtype=np.float64)

    @property
    def ensemble(self) -> StackedEnsemble | None:
        """The stacked ensemble inside the pyfunc (None for a model logged some other way)."""
        wrapped = self.model.unwrap_python_model()
        inner = getattr(wrapped, "model", None)
        return inner if isinstance(inner, StackedEnsemble) else None

    @property
    def tradeable(self) -> bool:
        ensemble = self.ensemble
        return bool(ensemble is not None and ensemble.tradeable)

    @property
    def context(self) -> int:
        ensemble = self.ensemble
        return ensemble.context if ensemble is not None else 0

    @property
    def quality(self) -> Mapping[str, float]:
        ensemble = self.ensemble
        return quality_of(ensemble) if ensemble is not None else {}

    def edge(self, probabilities: np.ndarray) -> np.ndarray:
        ensemble = self.ensemble
        if ensemble is None:  # no payoff known: no edge, the policy never enters
            return np.full(len(probabilities), np.nan)
        return ensemble.expected_edge(np.asarray(probabilities, dtype=np.float64))


def checked_feature_set(name: str, mv: Any, expected: str) -> str:
    fs = mv.tags.get("feature_set_version", "")
    if fs != expected:
        raise FeatureSetMismatch(
            f"{name} v{mv.version} was trained on feature set {fs or 'unknown'}, "
            f"this code computes {expected}: retrain before serving"
        )
    return str(fs)


def load_version(name: str, version: str, expected_feature_set: str) -> ServedModel:
    """One registered version, by number (a backtest of a challenger, say)."""
    client = MlflowClient()
    try:
        mv = client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code in NOT_THERE:
            raise NoChampion(f"model {name!r} has no version {version!r}") from exc
        raise RegistryUnavailable(f"model registry did not answer: {exc}") from exc
    fs = checked_feature_set(name, mv, expected_feature_set)
    return ServedModel(name, str(mv.version), fs, _load_version(name, str(mv.version)))


def attach_to_version(
    name: str, version: str, folder: str, files: Sequence[Path], tags: Mapping[str, str]
) -> str:
    """Log `files` as artifacts of the run that trained `name` v`version`, under `folder`, and
    tag the version; returns the run id."""
    client = MlflowClient()
    try:
        run_id = client.get_model_version(name, version).run_id
        for path in files:
            client.log_artifact(run_id, str(path), artifact_path=folder)
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
    except MlflowException as exc:
        raise RegistryUnavailable(f"model registry did not answer: {exc}") from exc
    return str(run_id)
