"""GET /api/v1/ml/models and POST /api/v1/ml/predict through the real app: real candles in a
SQLite ledger, a real trained model in a real MLflow store (tests/registry/test_model_cache.py
trains it once). The app is create_app's, with the ml router and its state attached the way
serving/app.py will attach them (attach_ml), so these run before that change lands."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.auth import Scope
from core.clock import FakeClock
from core.errors import LedgerUnavailable
from core.features.registry import FEATURE_NAMES
from infra.settings import Settings
from registry.model_cache import ModelCache
from registry.model_catalog import MlflowCatalog
from services import bootstrap, ml
from serving.app import create_app
from serving.routes import ml as ml_routes
from tests.registry.test_model_cache import NAME, SYMBOLS, Store, trained_store
from tests.serving.conftest import NOW, SECRET
from tests.serving.tokens import bearer, issue_token

PREDICT = "/api/v1/ml/predict"
MODELS = "/api/v1/ml/models"
SOME_CANDLE = {"symbol": "ETH/USDT", "candle_time": "2024-03-01T10:00:00+00:00"}


def attach_ml(app: FastAPI, service: ml.MlService) -> None:
    """The router and its state, as serving/app.py attaches them once it does (then only the
    state is replaced: its router is there already)."""
    if getattr(app.state, "ml", None) is None:
        app.include_router(ml_routes.router, prefix="/api/v1")
    app.state.ml = service


def make_client(url: str, cache: ModelCache, catalog: MlflowCatalog) -> TestClient:
    settings = Settings(
        database_url=url,
        kill_switch_secret=SECRET,
        var_dir=Path(tempfile.mkdtemp(prefix="tradeflow-api-")),
        symbols=SYMBOLS,
        whitelist=SYMBOLS,
        model_name=NAME,
    )
    app = create_app(settings, clock=FakeClock(NOW))
    config = ml.PredictConfig(
        settings.exchange, settings.timeframe, settings.reference_symbol, NAME
    )
    attach_ml(app, ml.MlService(cache, catalog, bootstrap.ledger_unmigrated(settings), config))
    return TestClient(app, headers=bearer(read_token(settings)))


def read_token(settings: Settings) -> str:
    """A read token stored in the app's ledger; a well-formed unknown one when that ledger
    does not answer (the request then meets the outage, as any would)."""
    try:
        bootstrap.ledger(settings)
    except LedgerUnavailable:
        return "tf_" + "0" * 12 + "_" + "A" * 43
    return issue_token(settings.database_url or "", Scope.READ)


@pytest.fixture
def client(candle_ledger: str, store: Store) -> Iterator[TestClient]:
    with make_client(candle_ledger, store.cache(alias_ttl_s=0), MlflowCatalog(store.uri)) as c:
        yield c


@pytest.fixture
def dead_registry(candle_ledger: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    dead = "http://127.0.0.1:1"
    with make_client(candle_ledger, ModelCache("fs", tracking_uri=dead), MlflowCatalog(dead)) as c:
        yield c


def newest(symbol: str = "ETH/USDT") -> pd.Timestamp:
    return pd.Timestamp(trained_store().candles[symbol]["open_time"].iloc[-1])


def by_candle(symbol: str = "ETH/USDT", **extra: Any) -> dict[str, Any]:
    return {"symbol": symbol, "candle_time": newest(symbol).isoformat(), **extra}


# -- GET /ml/models ---------------------------------------------------------------------------


def test_models_when_versions_registered_then_listed_with_aliases_unsigned(
    client: TestClient, store: Store, champion: str
) -> None:
    v2 = store.register()
    store.move("challenger", v2)
    r = client.get(MODELS)  # a read: the client's default headers carry a read token
    assert r.status_code == 200
    (model,) = r.json()["models"]
    assert model["name"] == NAME
    assert model["aliases"] == {"champion": champion, "challenger": v2}
    assert [v["version"] for v in model["versions"]] == [v2, champion]
    newest_version = model["versions"][0]
    assert newest_version["aliases"] == ["challenger"]
    assert newest_version["status"] == "READY"
    assert newest_version["feature_set_version"] == store.trained.feature_set
    assert newest_version["created_at"].endswith("+00:00")


def test_models_when_trained_then_run_metrics_listed(candle_ledger: str) -> None:
    trained = trained_store()
    cache = ModelCache(trained.feature_set, tracking_uri=trained.uri)
    with make_client(candle_ledger, cache, MlflowCatalog(trained.uri)) as c:
        (model,) = c.get(MODELS).json()["models"]
    metrics = model["versions"][0]["metrics"]
    assert any(k.startswith("ensemble_") for k in metrics)
    assert model["versions"][0]["promotion"] in {"champion", "rejected"}


# -- POST /ml/predict: answers ----------------------------------------------------------------


def test_predict_when_candle_stored_then_the_champions_probability(
    client: TestClient, store: Store, champion: str
) -> None:
    r = client.post(PREDICT, json=by_candle())
    assert r.status_code == 200
    body = r.json()
    expected = client.app.state.ml.predict(  # type: ignore[attr-defined]
        ml.CandleQuery("ETH/USDT", newest().to_pydatetime())
    )
    assert body == {
        "probability": expected.probability,
        "model": {
            "name": NAME,
            "version": champion,
            "feature_set_version": store.trained.feature_set,
        },
        "symbol": "ETH/USDT",
        "candle_time": newest().isoformat(),
    }
    assert 0 < body["probability"] < 1


def test_predict_when_alias_moved_then_next_request_served_by_the_new_version(
    client: TestClient, store: Store, champion: str
) -> None:
    assert client.post(PREDICT, json=by_candle()).json()["model"]["version"] == champion
    v2 = store.register()
    store.move("champion", v2)  # as in the MLflow UI; this app's cache asks at every request
    assert client.post(PREDICT, json=by_candle()).json()["model"]["version"] == v2


def test_predict_when_feature_row_and_version_given_then_that_version_answers(
    client: TestClient, store: Store, champion: str
) -> None:
    row = dict.fromkeys(FEATURE_NAMES, 0.1)
    r = client.post(PREDICT, json={"features": row, "model": NAME, "version": champion})
    assert r.status_code == 200
    assert r.json()["model"]["version"] == champion
    assert (r.json()["symbol"], r.json()["candle_time"]) == (None, None)


# -- POST /ml/predict: refusals ---------------------------------------------------------------


def test_predict_when_feature_row_broken_then_422_naming_each_feature(
    client: TestClient, champion: str
) -> None:
    row: dict[str, Any] = dict.fromkeys(FEATURE_NAMES, 0.1)
    del row["rsi_14"]
    row.update(macd=float("nan"), adx_14=float("inf"), cci_20=None, typo=1.0)
    body = json.dumps({"features": row})  # NaN and Infinity as JSON's non-standard literals
    r = client.post(PREDICT, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json() | {"detail": ""} == {
        "detail": "",
        "missing": ["rsi_14"],
        "not_finite": ["macd", "adx_14", "cci_20"],
        "unknown": ["typo"],
    }
    assert "missing: rsi_14" in r.json()["detail"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "either symbol and candle_time, or features"),
        ({**SOME_CANDLE, "features": {}}, "either symbol and candle_time, or features"),
        ({"symbol": "ETH/USDT"}, "go together"),
        ({"symbol": "ETH/USDT", "candle_time": "2024-03-01T10:00:00"}, "timezone"),
        ({**SOME_CANDLE, "colour": "red"}, "Extra inputs are not permitted"),
        ({"features": {"macd": "high"}}, "valid number"),
    ],
)
def test_predict_when_body_malformed_then_422_saying_what(
    client: TestClient, payload: dict[str, Any], message: str
) -> None:
    r = client.post(PREDICT, json=payload)
    assert r.status_code == 422
    assert r.json()["detail"] == "malformed body"
    assert message in json.dumps(r.json()["errors"])


def test_predict_when_body_not_json_or_too_large_then_refused_unread(client: TestClient) -> None:
    r = client.post(PREDICT, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    huge = json.dumps({"features": {f"f{i}": 0.5 for i in range(2000)}})
    assert client.post(PREDICT, content=huge).status_code == 413


@pytest.mark.parametrize(
    ("extra", "text"),
    [
        ({"version": "99"}, "no version '99'"),
        ({"model": "nope"}, "no registered model named 'nope'"),
        ({"version": "staging"}, "no alias 'staging'"),
    ],
)
def test_predict_when_model_version_or_alias_unknown_then_404(
    client: TestClient, champion: str, extra: dict[str, str], text: str
) -> None:
    r = client.post(PREDICT, json=by_candle(**extra))
    assert r.status_code == 404
    assert text in r.json()["detail"]


def test_predict_when_candle_not_stored_then_404(client: TestClient, champion: str) -> None:
    between = (newest() - timedelta(minutes=30)).isoformat()
    r = client.post(PREDICT, json={"symbol": "ETH/USDT", "candle_time": between})
    assert r.status_code == 404
    assert "no ETH/USDT 1h candle stored at" in r.json()["detail"]


def test_predict_when_no_champion_then_503_with_reason(client: TestClient, store: Store) -> None:
    store.register()  # a version, never made champion
    r = client.post(PREDICT, json=by_candle())
    assert r.status_code == 503
    assert r.json()["reason"] == "no_servable_model"
    assert "no 'champion' alias" in r.json()["detail"]


def test_reads_when_registry_does_not_answer_then_503_without_its_text(
    dead_registry: TestClient,
) -> None:
    for r in (dead_registry.post(PREDICT, json=by_candle()), dead_registry.get(MODELS)):
        assert r.status_code == 503
        assert r.json() == {"status": "unavailable", "reason": "registry_unavailable"}


def test_predict_when_ledger_unreachable_then_the_apps_503(store: Store, champion: str) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
    with make_client(url, store.cache(), MlflowCatalog(store.uri)) as c:
        r = c.post(PREDICT, json=by_candle())
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "reason": "ledger_unavailable"}


def test_ml_routes_when_no_token_then_401_and_nothing_predicted(client: TestClient) -> None:
    """Model metadata and inference (CPU a caller could spend) need a read token."""
    bare = {"Authorization": ""}
    assert client.get(MODELS, headers=bare).status_code == 401
    assert client.post(PREDICT, json=by_candle(), headers=bare).status_code == 401
