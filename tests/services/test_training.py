"""Training through the service as the train flow runs it: real candles in a ledger, the
settings' config (two tree members for time), a real MLflow store."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from core.features.registry import feature_set_version
from infra.ledger.memory import MemoryLedger
from registry.mlflow_registry import CHALLENGER, CHAMPION, MlflowRegistry
from services import bootstrap
from services.training import TrainingReport, train_and_register


@pytest.fixture(scope="module")
def ledger(btc_1h: pd.DataFrame, eth_1h: pd.DataFrame) -> MemoryLedger:
    led = MemoryLedger()
    for symbol, frame in (("BTC/USDT", btc_1h.head(2600)), ("ETH/USDT", eth_1h.head(2600))):
        led.candles.upsert("binance", symbol, "1h", frame)
    return led


@pytest.fixture
def report(ledger: MemoryLedger, mlflow_store: str, app_settings) -> TrainingReport:  # type: ignore[no-untyped-def]
    cfg = bootstrap.training_config(app_settings())
    cfg = replace(cfg, members=[m for m in cfg.members if m.name in ("xgboost", "lightgbm")])
    return train_and_register(ledger, MlflowRegistry(), cfg)


def test_train_when_first_version_then_challenger_and_champion_with_reasoned_weights(
    report: TrainingReport,
) -> None:
    client = MlflowClient()
    version = report.registered.version
    assert (
        str(client.get_model_version_by_alias(report.registered.name, CHALLENGER).version)
        == version
    )
    assert report.promotion.promoted, report.promotion.reason
    assert (
        str(client.get_model_version_by_alias(report.registered.name, CHAMPION).version) == version
    )
    assert set(report.weights) == {"xgboost", "lightgbm"}
    for member, weight in report.weights.items():
        assert weight > 0 or member in report.notes  # a zero weight always says why
    assert "policy" in report.notes
    assert report.ranges["out_of_fold"][0] > report.ranges["training"][0]


def test_train_when_registered_then_the_model_carries_weights_payoff_and_feature_set(
    report: TrainingReport, tmp_path: Path
) -> None:
    uri = f"models:/{report.registered.name}/{report.registered.version}"
    inner = mlflow.pyfunc.load_model(uri).unwrap_python_model().model
    assert inner.feature_set_version == feature_set_version() == report.feature_set_version
    assert dict(inner.weights) == pytest.approx(report.weights)
    assert inner.tradeable == report.tradeable
    run = MlflowClient().get_run(report.registered.run_id)
    assert run.data.tags["training_cut"] > run.data.tags["data_range"].split(" .. ")[1][:10]
    described = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=report.registered.run_id,
                artifact_path="ensemble.json",
                dst_path=str(tmp_path),
            )
        ).read_text()
    )
    assert described["feature_set_version"] == feature_set_version()
    assert described["payoff"]["cost"] == pytest.approx(0.003)
