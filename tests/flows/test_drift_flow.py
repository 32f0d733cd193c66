"""The drift flow through a real MLflow registry, ledger and Prefect server, on real candles:
a champion trained on the 2021 bull market, checked at the end of May 2024, drifts (its label's
base rate too, which the ledger and the run's artifact show); told to train in this process
(retrain_deployment=None), it stores the check as triggered before training starts and trains
once, however often it runs within the debounce; a failed training fails the run after the
check is kept; with the deployment it schedules that and records the run it started; a
deployment the server does not know fails the run, naming it, with the check kept as
triggered (no silent training in the drift worker)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from prefect import flow
from prefect.client.orchestration import get_client

from core.features.registry import feature_set_version
from infra.market_data.files import read_candle_file
from services import bootstrap
from services.bootstrap import Settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

NOW = datetime(2024, 6, 1, tzinfo=UTC)
RANGE_2021 = "2020-12-01 00:00:00+00:00 .. 2021-07-17 20:00:00+00:00"
RANGE_2024 = "2024-01-01 00:00:00+00:00 .. 2024-04-30 23:00:00+00:00"
FILES = (("nfi-binance-spot-2021", "json"), ("genetrader-binance-spot-2024", "feather"))
# Per run of a train stand-in: the debounce's view (last_triggered) when training started.
TRAIN_RUNS: list[datetime | None] = []


class RsiLogistic(mlflow.pyfunc.PythonModel):
    """A small real pyfunc champion: P(up) as a logistic of RSI(14)."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return 1 / (1 + np.exp(-10 * (model_input["rsi_14"].to_numpy(dtype=float) - 0.5)))


def _seen_triggered() -> datetime | None:
    settings = bootstrap.get_settings()
    return bootstrap.ledger(settings).drift.last_triggered(settings.model_name)


@flow(name="train")
def counted_train() -> None:
    """Stands in for the train flow (its own tests train for real): counts its runs, with
    when the ledger said retraining was last triggered as each started."""
    TRAIN_RUNS.append(_seen_triggered())


@flow(name="train")
def failing_train() -> None:
    """A train flow stand-in whose training fails."""
    TRAIN_RUNS.append(_seen_triggered())
    raise RuntimeError("stand-in training failed")


@pytest.fixture
def champion(app_settings, shared_data: Path) -> Iterator[tuple[Settings, str]]:  # type: ignore[no-untyped-def]
    """Candles of 2021 and of 2024 up to NOW in the ledger; a registered champion whose
    training run says it was fit on 2021 (range_train), while its version's data_range says
    2024: the run's split wins."""
    pytest.importorskip("evidently", reason="evidently==0.7.23 is not installed (see pyproject)")
    settings = app_settings()
    ledger = bootstrap.ledger(settings)
    for folder, ext in FILES:
        for pair in settings.symbols:
            path = shared_data / "ohlcv" / folder / f"{pair.replace('/', '_')}-1h.{ext}"
            frame = read_candle_file(path)
            ledger.candles.upsert("binance", pair, "1h", frame[frame["open_time"] < NOW])
    bootstrap.mlflow_store(settings)
    with mlflow.start_run(run_name="train-stub") as run:
        mlflow.set_tags({"range_train": RANGE_2021})
        mlflow.log_metric("ensemble_oof_auc", 0.5512)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=RsiLogistic(),
            pip_requirements=["numpy", "pandas"],
            registered_model_name=settings.model_name,
        )
    client, version = MlflowClient(), str(info.registered_model_version)
    client.set_model_version_tag(settings.model_name, version, "data_range", RANGE_2024)
    fs = feature_set_version()
    client.set_model_version_tag(settings.model_name, version, "feature_set_version", fs)
    client.set_registered_model_alias(settings.model_name, "champion", version)
    assert run.info.run_id == client.get_model_version(settings.model_name, version).run_id
    TRAIN_RUNS.clear()
    yield settings, version
    TRAIN_RUNS.clear()


def test_drift_flow_when_regime_changed_and_told_to_train_here_then_trains_once_in_debounce(
    champion: tuple[Settings, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.drift import drift

    settings, version = champion
    monkeypatch.setattr("flows.train.train", counted_train)
    first = drift(now=NOW, retrain_deployment=None)
    second = drift(now=NOW + timedelta(hours=2), retrain_deployment=None)  # in the debounce

    assert first.dataset_drift
    assert first.retrain_triggered
    assert second.dataset_drift
    assert not second.retrain_triggered
    assert second.flow_run_id is None
    assert TRAIN_RUNS == [NOW]  # once; the check was stored as triggered before it started
    assert first.reference_end == datetime(2021, 7, 17, 20, tzinfo=UTC)  # range_train's end
    assert first.auc_reference == 0.5512  # the training run's metric, read from MLflow
    assert first.target_drift is True  # reported; the feature share decided the retraining

    ledger = bootstrap.ledger(settings)
    stored = ledger.drift.recent(settings.model_name)
    assert [(c.checked_at, c.retrain_triggered) for c in stored] == [
        (NOW + timedelta(hours=2), False),
        (NOW, True),
    ]
    assert [c.id for c in stored] == [second.id, first.id]  # the flow returns what it stored
    assert stored[1].flow_run_id == first.flow_run_id
    assert ledger.drift.last_triggered(settings.model_name) == NOW

    with get_client(sync_client=True) as prefect:
        train_run = prefect.read_flow_run(UUID(str(first.flow_run_id)))
        assert prefect.read_flow(train_run.flow_id).name == "train"
        artifacts = [a for a in prefect.read_artifacts() if a.key == "drift"]
    assert any(str(first.report_path) in str(a.data) for a in artifacts)
    assert any("| target drift | **yes**" in str(a.data) for a in artifacts)
    rates = f"{first.target_rate_current:.1%} now on {first.matured_rows} matured labels vs "
    assert any(f"| label rate | {rates}" in str(a.data) for a in artifacts)

    report = Path(str(first.report_path))
    assert report.parent == settings.var_dir / "reports" / "drift"
    client = MlflowClient(settings.tracking_uri)
    mv = client.get_model_version(settings.model_name, version)
    attached = [Path(a.path).name for a in client.list_artifacts(mv.run_id, "drift")]
    assert report.name in attached
    assert Path(str(second.report_path)).name in attached
    assert "drift_last" in mv.tags


def test_drift_flow_when_train_deployment_exists_then_schedules_it_and_records_its_run(
    champion: tuple[Settings, str],
) -> None:
    from flows.drift import drift

    settings, _ = champion
    name = f"train-daily-{uuid4().hex[:8]}"  # not prefect.yaml's: the server is the session's
    deployment_id = counted_train.to_deployment(name=name).apply()
    try:
        check = drift(now=NOW, retrain_deployment=f"train/{name}")
        with get_client(sync_client=True) as prefect:
            scheduled = prefect.read_flow_run(UUID(str(check.flow_run_id)))
    finally:  # the Prefect server is the session's: leave no deployment for other tests
        with get_client(sync_client=True) as prefect:
            prefect.delete_deployment(deployment_id)
    assert check.retrain_triggered
    assert scheduled.deployment_id == deployment_id
    assert scheduled.state is not None
    assert scheduled.state.is_scheduled()  # started, not waited for (timeout=0)
    assert TRAIN_RUNS == []  # nothing trained in this process
    stored = bootstrap.ledger(settings).drift.latest(settings.model_name)
    assert stored == check


def test_drift_flow_when_train_deployment_unknown_then_fails_naming_it_and_keeps_the_trigger(
    champion: tuple[Settings, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.drift import UnknownDeployment, drift

    settings, _ = champion
    monkeypatch.setattr("flows.train.train", counted_train)  # must not run: no silent fallback
    misspelt = f"train/trian-daily-{uuid4().hex[:8]}"  # no test deploys it
    with pytest.raises(UnknownDeployment, match=f"no deployment '{misspelt}'"):
        drift(now=NOW, retrain_deployment=misspelt)
    assert TRAIN_RUNS == []
    ledger = bootstrap.ledger(settings)
    stored = ledger.drift.latest(settings.model_name)
    assert stored is not None
    assert (stored.checked_at, stored.retrain_triggered, stored.flow_run_id) == (NOW, True, None)
    assert ledger.drift.last_triggered(settings.model_name) == NOW  # the debounce holds


def test_drift_flow_when_training_here_fails_then_check_kept_with_its_run_and_flow_fails(
    champion: tuple[Settings, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.drift import RetrainFailed, drift

    settings, _ = champion
    monkeypatch.setattr("flows.train.train", failing_train)
    with pytest.raises(RetrainFailed, match="failed"):
        drift(now=NOW, retrain_deployment=None)
    assert TRAIN_RUNS == [NOW]
    stored = bootstrap.ledger(settings).drift.latest(settings.model_name)
    assert stored is not None
    assert (stored.checked_at, stored.retrain_triggered) == (NOW, True)
    assert stored.flow_run_id is not None
    with get_client(sync_client=True) as prefect:
        train_run = prefect.read_flow_run(UUID(stored.flow_run_id))
        assert prefect.read_flow(train_run.flow_id).name == "train"
    assert train_run.state is not None
    assert train_run.state.is_failed()


def test_default_retrain_deployment_when_read_from_prefect_yaml_then_it_deploys_train() -> None:
    import yaml

    from flows.drift import TRAIN_DEPLOYMENT

    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "prefect.yaml").read_text())
    flow_name, deployment = TRAIN_DEPLOYMENT.split("/")
    entrypoints = {d["name"]: d["entrypoint"] for d in spec["deployments"]}
    assert entrypoints[deployment] == f"flows/train.py:{flow_name}"
