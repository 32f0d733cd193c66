"""The model use cases over real parts: the shared ModelCache and the MLflow catalog on a real
store (tests/registry/test_model_cache.py trains the model once), real Binance candles in an
in-memory ledger; a prediction at a stored candle is compared with the decision flow's own."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta

import pandas as pd
import pytest
from mlflow import MlflowClient

from core.features.registry import FEATURE_NAMES
from infra.ledger.memory import MemoryLedger
from infra.settings import Settings
from registry.model_cache import ModelCache
from registry.model_catalog import MlflowCatalog
from services import bootstrap, ml
from services.decide.batch import prepare_batch
from tests.registry.test_model_cache import NAME, SYMBOLS, Store, trained_store

CONFIG = ml.PredictConfig("binance", "1h", "BTC/USDT", NAME)


def ledger_of(
    candles: Mapping[str, pd.DataFrame], until: pd.Timestamp | None = None
) -> MemoryLedger:
    ledger = MemoryLedger()
    for symbol, frame in candles.items():
        kept = frame if until is None else frame[frame["open_time"] <= until]
        ledger.candles.upsert("binance", symbol, "1h", kept)
    return ledger


@pytest.fixture
def candles() -> Mapping[str, pd.DataFrame]:
    return trained_store().candles


@pytest.fixture
def ledger(candles: Mapping[str, pd.DataFrame]) -> MemoryLedger:
    return ledger_of(candles)


def decision_probability(
    ledger: MemoryLedger, cache: ModelCache, symbol: str
) -> tuple[pd.Timestamp, float]:
    """What the decision flow reads for the newest candle of `symbol`."""
    settings = Settings(symbols=SYMBOLS, whitelist=SYMBOLS, model_name=NAME)
    batch = prepare_batch(
        ledger, cache.get(NAME, "champion"), bootstrap.decision_config(settings), 1
    )
    t = batch.times[-1]
    return t, batch.probability(symbol, t)


def newest(candles: Mapping[str, pd.DataFrame], symbol: str, back: int = 0) -> pd.Timestamp:
    return pd.Timestamp(candles[symbol]["open_time"].iloc[-1 - back])


# -- by candle --------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", ["ETH/USDT", "BTC/USDT"])
def test_predict_when_candle_stored_then_equals_the_decision_flows_probability(
    store: Store, champion: str, ledger: MemoryLedger, symbol: str
) -> None:
    # Arrange
    cache = store.cache()
    t, expected = decision_probability(ledger, cache, symbol)
    # Act
    p = ml.predict(cache, ledger, ml.CandleQuery(symbol, t.to_pydatetime()), CONFIG)
    # Assert
    assert p.probability == expected
    assert 0 < p.probability < 1
    assert (p.model_name, p.model_version, p.symbol) == (NAME, champion, symbol)
    assert p.feature_set_version == store.trained.feature_set
    assert p.candle_time == t.to_pydatetime()


def test_predict_when_later_candles_stored_then_they_are_not_read(
    store: Store, champion: str, candles: Mapping[str, pd.DataFrame], ledger: MemoryLedger
) -> None:
    # Arrange: the ledger as it was when candle t closed, and the ledger today
    cache = store.cache()
    t = newest(candles, "ETH/USDT", back=300)
    then = ledger_of(candles, until=t)
    _, decided_then = decision_probability(then, cache, "ETH/USDT")
    # Act
    today = ml.predict(cache, ledger, ml.CandleQuery("ETH/USDT", t.to_pydatetime()), CONFIG)
    # Assert
    assert today.probability == decided_then


def test_predict_when_feature_row_of_a_candle_given_then_same_probability(
    store: Store, champion: str, candles: Mapping[str, pd.DataFrame], ledger: MemoryLedger
) -> None:
    t = newest(candles, "ETH/USDT").to_pydatetime()
    frame = ml.candle_features(ledger, CONFIG, "ETH/USDT", t)
    row = {name: float(frame[name].iloc[-1]) for name in FEATURE_NAMES}
    by_row = ml.predict(store.cache(), ledger, ml.FeatureQuery(row), CONFIG)
    by_candle = ml.predict(store.cache(), ledger, ml.CandleQuery("ETH/USDT", t), CONFIG)
    assert by_row.probability == pytest.approx(by_candle.probability, abs=1e-12)
    assert (by_row.symbol, by_row.candle_time) == (None, None)


def test_predict_when_no_candle_at_that_time_then_candle_not_found(
    store: Store, champion: str, candles: Mapping[str, pd.DataFrame], ledger: MemoryLedger
) -> None:
    t = newest(candles, "ETH/USDT").to_pydatetime()
    with pytest.raises(ml.CandleNotFound, match="no ETH/USDT 1h candle stored at"):
        ml.predict(
            store.cache(), ledger, ml.CandleQuery("ETH/USDT", t + timedelta(minutes=30)), CONFIG
        )
    with pytest.raises(ml.CandleNotFound, match="no SOL/USDT 1h candle"):
        ml.predict(store.cache(), ledger, ml.CandleQuery("SOL/USDT", t), CONFIG)
    assert store.cache().stats().loads == 0  # refused before the model was asked for


def test_predict_when_reference_candles_missing_then_candle_not_found(
    store: Store, champion: str, candles: Mapping[str, pd.DataFrame]
) -> None:
    eth_only = ledger_of({"ETH/USDT": candles["ETH/USDT"]})
    t = newest(candles, "ETH/USDT").to_pydatetime()
    with pytest.raises(ml.CandleNotFound, match=r"BTC/USDT candles \(the cross-asset reference\)"):
        ml.predict(store.cache(), eth_only, ml.CandleQuery("ETH/USDT", t), CONFIG)


def test_predict_when_candle_in_warm_up_then_invalid_features_names_unformed_ones(
    store: Store, champion: str, candles: Mapping[str, pd.DataFrame], ledger: MemoryLedger
) -> None:
    t = pd.Timestamp(candles["ETH/USDT"]["open_time"].iloc[20]).to_pydatetime()
    with pytest.raises(ml.InvalidFeatures, match="features not formed yet") as info:
        ml.predict(store.cache(), ledger, ml.CandleQuery("ETH/USDT", t), CONFIG)
    assert "sma_ratio_200" in info.value.not_finite
    assert "sma_ratio_10" not in info.value.not_finite


def test_predict_when_candle_time_naive_then_read_as_utc(
    store: Store, champion: str, candles: Mapping[str, pd.DataFrame], ledger: MemoryLedger
) -> None:
    t = newest(candles, "BTC/USDT").to_pydatetime()
    naive = ml.predict(
        store.cache(), ledger, ml.CandleQuery("BTC/USDT", t.replace(tzinfo=None)), CONFIG
    )
    assert naive.candle_time == t


# -- by feature row ---------------------------------------------------------------------------


def test_predict_when_row_has_missing_non_finite_and_unknown_features_then_names_each(
    store: Store, champion: str, ledger: MemoryLedger
) -> None:
    # Arrange: a synthetic row (an edge case): every feature 0.1, then broken on purpose
    row: dict[str, float | None] = dict.fromkeys(FEATURE_NAMES, 0.1)
    del row["rsi_14"], row["atr_pct_14"]
    row.update(macd=math.nan, adx_14=math.inf, obv_slope_14=None, not_a_feature=1.0)
    # Act
    with pytest.raises(ml.InvalidFeatures) as info:
        ml.predict(store.cache(), ledger, ml.FeatureQuery(row), CONFIG)
    # Assert
    err = info.value
    assert sorted(err.missing) == ["atr_pct_14", "rsi_14"]
    assert sorted(err.not_finite) == ["adx_14", "macd", "obv_slope_14"]
    assert err.unknown == ["not_a_feature"]
    assert "missing: " in str(err)
    assert store.cache().stats().loads == 0


# -- which model ------------------------------------------------------------------------------


def test_predict_when_version_or_alias_named_then_that_version_serves(
    store: Store, champion: str, ledger: MemoryLedger
) -> None:
    v2 = store.register()
    store.move("challenger", v2)
    row = dict.fromkeys(FEATURE_NAMES, 0.1)
    cache = store.cache()
    assert (
        ml.predict(cache, ledger, ml.FeatureQuery(row, ml.ModelRef(None, v2)), CONFIG).model_version
        == v2
    )
    by_alias = ml.predict(
        cache, ledger, ml.FeatureQuery(row, ml.ModelRef(NAME, "challenger")), CONFIG
    )
    assert by_alias.model_version == v2


def test_predict_when_named_model_version_or_alias_unknown_then_model_not_found(
    store: Store, champion: str, ledger: MemoryLedger
) -> None:
    row = dict.fromkeys(FEATURE_NAMES, 0.1)
    for ref, text in [
        (ml.ModelRef("nope"), "no registered model named 'nope'"),
        (ml.ModelRef(None, "99"), "no version '99'"),
        (ml.ModelRef(NAME, "staging"), "no alias 'staging'"),
    ]:
        with pytest.raises(ml.ModelNotFound, match=text):
            ml.predict(store.cache(), ledger, ml.FeatureQuery(row, ref), CONFIG)


def test_predict_when_nothing_trained_or_no_champion_then_no_servable_model(
    store: Store, ledger: MemoryLedger
) -> None:
    row = dict.fromkeys(FEATURE_NAMES, 0.1)
    with pytest.raises(ml.NoServableModel, match="run training first"):
        ml.predict(store.cache(), ledger, ml.FeatureQuery(row), CONFIG)
    store.register()  # a version, but no champion alias on it
    with pytest.raises(ml.NoServableModel, match="no 'champion' alias"):
        ml.predict(store.cache(), ledger, ml.FeatureQuery(row), CONFIG)


def test_predict_when_champion_trained_on_another_feature_set_then_no_servable_model(
    store: Store, ledger: MemoryLedger
) -> None:
    store.move("champion", store.register(feature_set="0123456789abcdef"))
    with pytest.raises(ml.NoServableModel, match="0123456789abcdef"):
        ml.predict(
            store.cache(), ledger, ml.FeatureQuery(dict.fromkeys(FEATURE_NAMES, 0.1)), CONFIG
        )


def test_predict_when_registry_does_not_answer_then_registry_down(
    monkeypatch: pytest.MonkeyPatch, ledger: MemoryLedger
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    cache = ModelCache("fs", tracking_uri="http://127.0.0.1:1")
    with pytest.raises(ml.RegistryDown) as info:
        ml.predict(cache, ledger, ml.FeatureQuery(dict.fromkeys(FEATURE_NAMES, 0.1)), CONFIG)
    assert "127.0.0.1" not in str(info.value)  # the registry's own text stays in the logs


# -- list_models ------------------------------------------------------------------------------


def test_list_models_when_trained_then_version_tags_and_run_metrics_as_mlflow_has_them() -> None:
    trained = trained_store()
    client = MlflowClient(trained.uri, registry_uri=trained.uri)
    mv = client.get_model_version(trained.name, "1")
    models = ml.list_models(MlflowCatalog(trained.uri))
    assert [m.name for m in models] == [trained.name]
    (v1,) = models[0].versions
    assert v1.version == "1"
    assert v1.status == "READY"
    assert v1.run_id == mv.run_id
    assert v1.metrics == client.get_run(mv.run_id).data.metrics
    assert any(k.startswith("ensemble_") for k in v1.metrics)
    assert v1.feature_set_version == trained.feature_set
    assert v1.promotion in {"champion", "rejected"}
    assert v1.promotion_reason


def test_list_models_when_aliases_moved_then_each_version_names_its_aliases(store: Store) -> None:
    v1, v2 = store.register(), store.register()
    store.move("champion", v2)
    store.move("challenger", v1)
    store.register("other-model")
    models = ml.list_models(MlflowCatalog(store.uri))
    assert [m.name for m in models] == ["other-model", NAME]
    served = models[1]
    assert [v.version for v in served.versions] == [v2, v1]  # newest first
    assert served.aliases == {"champion": v2, "challenger": v1}
    assert served.versions[0].aliases == ("champion",)
    assert served.versions[0].metrics == {}  # registered without a run


def test_list_models_when_name_has_a_quote_then_its_versions_listed(store: Store) -> None:
    version = store.register("it's")
    (model,) = ml.list_models(MlflowCatalog(store.uri))
    assert [v.version for v in model.versions] == [version]


def test_list_models_when_registry_does_not_answer_then_registry_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(ml.RegistryDown):
        ml.list_models(MlflowCatalog("http://127.0.0.1:1"))


def test_candles_per_prediction_when_compared_then_the_feature_window_plus_the_candle() -> None:
    from core.features.build import INCREMENTAL_WINDOW
    from services.ml import CANDLES_PER_PREDICTION

    assert CANDLES_PER_PREDICTION == INCREMENTAL_WINDOW + 1


def test_list_models_when_several_versions_then_one_runs_query_per_model(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.client.create_registered_model(NAME)
    for auc in (0.51, 0.53, 0.55):  # three versions, each from its own run
        run = store.client.create_run("0")
        store.client.log_metric(run.info.run_id, "ensemble_oof_auc", auc)
        store.client.create_model_version(NAME, store.trained.model_uri, run_id=run.info.run_id)
    catalog = MlflowCatalog(store.uri)
    client = catalog._client()
    calls: list[str] = []
    search = client.search_runs
    monkeypatch.setattr(
        client, "search_runs", lambda *a, **k: calls.append("search") or search(*a, **k)
    )
    monkeypatch.setattr(client, "get_run", lambda *a, **k: calls.append("get_run"))
    [model] = ml.list_models(catalog)
    assert [v.metrics for v in model.versions] == [
        {"ensemble_oof_auc": a}
        for a in (0.55, 0.53, 0.51)  # newest first
    ]
    assert calls == ["search"]
