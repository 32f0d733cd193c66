"""MLflow: log a trained ensemble, register it, move `champion` only when it wins, load by alias.

Implements core.ports' ModelRegistry (MlflowRegistry), ChampionSource (ChampionCache) and
Model (ServedModel)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from core.errors import FatalError, RetryableError
from core.models.training import EnsembleClassifier, evaluate
from core.ports import Promotion, Registered

CHAMPION = "champion"
CHALLENGER = "challenger"
EXPERIMENT = "tradeflow-training"
PROMOTION_METRIC = "auc"
# Known up front: inferring them costs MLflow several seconds per log_model.
PIP_REQUIREMENTS = [
    "xgboost-cpu==3.2.0",
    "lightgbm==4.7.0",
    "pandas==2.3.3",
    "scikit-learn",
    "numpy",
]


class RegistryError(FatalError):
    pass


class RegistryUnavailable(RetryableError):
    """The tracking server did not answer (or answered an error): try again later."""


# MLflow's answers meaning "no such model or alias", as opposed to "could not ask".
_NOT_THERE = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


class NoChampion(RegistryError):
    pass


class FeatureSetMismatch(RegistryError):
    pass


class EnsemblePyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: predict returns P(up beyond fees) for each row."""

    def __init__(self, model: EnsembleClassifier) -> None:
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
        model: EnsembleClassifier,
        name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        example: pd.DataFrame,
    ) -> Registered:
        return log_and_register(model, name, dict(params), dict(metrics), dict(tags), example)

    def promote_if_better(
        self, registered: Registered, validation: pd.DataFrame, features: Sequence[str]
    ) -> Promotion:
        return promote_if_better(registered, validation, features)

    def attach(
        self, name: str, version: str, folder: str, files: Sequence[Path], tags: Mapping[str, str]
    ) -> str:
        return attach_to_version(name, version, folder, files, tags)


def log_and_register(
    model: EnsembleClassifier,
    name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    example: pd.DataFrame,
) -> Registered:
    with mlflow.start_run(run_name=f"train-{name}") as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.set_tags(tags)
        mlflow.log_dict({"features": list(model.features)}, "features.json")
        signature = infer_signature(example, model.predict_proba(example))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=EnsemblePyfunc(model),
            signature=signature,
            input_example=example.head(5),
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key in ("feature_set_version", "data_range"):
        if key in tags:
            client.set_model_version_tag(name, version, key, tags[key])
    return Registered(name, version, run.info.run_id)


def champion_version(client: MlflowClient, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def promote_if_better(
    registered: Registered, validation: pd.DataFrame, features: Sequence[str]
) -> Promotion:
    """The first version becomes champion; later ones only if they beat it on the same window."""
    client = MlflowClient()
    name, version = registered.name, registered.version
    current = champion_version(client, name)
    labels = validation["label"].to_numpy()
    inputs = validation.loc[:, list(features)]
    new_score = evaluate(_load_version(name, version).predict(inputs), labels)[PROMOTION_METRIC]
    if current is None:
        promoted, reason = (
            True,
            f"first version: champion with validation {PROMOTION_METRIC}={new_score:.4f}",
        )
    else:
        old_score = evaluate(_load_version(name, current).predict(inputs), labels)[PROMOTION_METRIC]
        promoted = new_score > old_score
        verdict = "beats" if promoted else "does not beat"
        reason = (
            f"v{version} validation {PROMOTION_METRIC}={new_score:.4f} {verdict} champion "
            f"v{current} {old_score:.4f} on the same window"
        )
    alias = CHAMPION if promoted else CHALLENGER
    client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, "promotion", "champion" if promoted else "rejected")
    client.set_model_version_tag(name, version, "promotion_reason", reason)
    client.set_tag(registered.run_id, "promotion", reason)
    return Promotion(promoted, version if promoted else str(current), reason)


def _load_version(name: str, version: str) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(f"models:/{name}/{version}")


@dataclass(frozen=True, slots=True)
class ServedModel:
    name: str
    version: str
    feature_set_version: str
    model: mlflow.pyfunc.PyFuncModel

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model.predict(features), dtype=np.float64)


class ChampionCache:
    """Loads `models:/NAME@champion` once; reloads only when the alias points elsewhere."""

    def __init__(self, name: str, expected_feature_set: str) -> None:
        self.name = name
        self.expected_feature_set = expected_feature_set
        self._served: ServedModel | None = None
        self._lock = threading.Lock()
        self.loads = 0

    def get(self) -> ServedModel:
        client = MlflowClient()
        try:
            mv = client.get_model_version_by_alias(self.name, CHAMPION)
        except MlflowException as exc:
            if exc.error_code in _NOT_THERE:
                raise NoChampion(
                    f"no '{CHAMPION}' alias on model {self.name!r}: run training first"
                ) from exc
            raise RegistryUnavailable(f"model registry did not answer: {exc}") from exc
        with self._lock:
            if self._served is None or self._served.version != str(mv.version):
                fs = _checked_feature_set(self.name, mv, self.expected_feature_set)
                model = mlflow.pyfunc.load_model(f"models:/{self.name}@{CHAMPION}")
                self._served = ServedModel(self.name, str(mv.version), fs, model)
                self.loads += 1
            return self._served


def _checked_feature_set(name: str, mv: Any, expected: str) -> str:
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
        if exc.error_code in _NOT_THERE:
            raise NoChampion(f"model {name!r} has no version {version!r}") from exc
        raise RegistryUnavailable(f"model registry did not answer: {exc}") from exc
    fs = _checked_feature_set(name, mv, expected_feature_set)
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
