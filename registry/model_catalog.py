"""Read-only view of the MLflow model registry for the API: registered models, their versions
(aliases, tags, status) and the metrics of the run that trained each.

services/ml.py's RegistryReader is written against this shape. MLflow is imported by the first
call, so the API starts without it (see registry/model_cache.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

MAX_MODELS = 100  # one page of search_registered_models; more would be a registry to browse
MAX_VERSIONS = 100  # newest first: a model retrained hourly for a year is not listed whole


@dataclass(frozen=True, slots=True)
class CatalogVersion:
    name: str
    version: str
    aliases: tuple[str, ...]
    status: str  # MLflow's registration status: READY, PENDING_REGISTRATION, FAILED_...
    tags: Mapping[str, str]
    run_id: str | None
    created_ms: int | None  # registration time, unix ms


class MlflowCatalog:
    """Implements services.ml.RegistryReader over an MLflow store (the process-wide one, or
    `tracking_uri`). Every MLflow failure is RegistryUnavailable: a catalog only reads."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        self._tracking_uri = tracking_uri
        self._client_obj: Any = None

    def model_names(self) -> list[str]:
        with _unavailable_on_error():
            found = self._client().search_registered_models(max_results=MAX_MODELS)
        return sorted(str(m.name) for m in found)

    def versions(self, name: str) -> list[CatalogVersion]:
        """Newest first. Aliases come from the registered model (search_model_versions leaves
        them out)."""
        client = self._client()
        with _unavailable_on_error():
            model = _registered(client, name)
            if model is None:  # deleted since it was listed
                return []
            aliases = dict(model.aliases or {})
            found = client.search_model_versions(
                _name_filter(name),
                max_results=MAX_VERSIONS,
                order_by=["version_number DESC"],
            )
        return [_version(name, mv, aliases) for mv in found]

    def runs_metrics(self, run_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        """The latest value of every metric each run logged, by run id, in one search."""
        if not run_ids:
            return {}
        client = self._client()
        quoted = ", ".join(f"'{r}'" for r in run_ids if r.isalnum())  # MLflow ids: hex
        with _unavailable_on_error():
            experiments = [e.experiment_id for e in client.search_experiments()]
            runs = client.search_runs(
                experiments, f"attributes.run_id IN ({quoted})", max_results=len(run_ids)
            )
        return {r.info.run_id: {k: float(v) for k, v in r.data.metrics.items()} for r in runs}

    def _client(self) -> Any:
        if self._client_obj is None:
            from mlflow import MlflowClient

            uri = self._tracking_uri
            self._client_obj = MlflowClient(uri, registry_uri=uri) if uri else MlflowClient()
        return self._client_obj


def _version(name: str, mv: Any, aliases: Mapping[str, Any]) -> CatalogVersion:
    version = str(mv.version)
    return CatalogVersion(
        name=name,
        version=version,
        aliases=tuple(sorted(a for a, v in aliases.items() if str(v) == version)),
        status=str(mv.status),
        tags=dict(mv.tags or {}),
        run_id=mv.run_id or None,
        created_ms=int(mv.creation_timestamp) if mv.creation_timestamp is not None else None,
    )


def _registered(client: Any, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    from registry.mlflow_registry import NOT_THERE

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code in NOT_THERE:
            return None
        raise


def _name_filter(name: str) -> str:
    # MLflow's filter grammar has no escapes: a name with a single quote goes in double ones.
    return f'name = "{name}"' if "'" in name else f"name = '{name}'"


@contextmanager
def _unavailable_on_error() -> Iterator[None]:
    from mlflow.exceptions import MlflowException

    from registry.mlflow_registry import RegistryUnavailable

    try:
        yield
    except MlflowException as exc:
        raise RegistryUnavailable(f"model registry did not answer: {exc}") from exc
