"""ModelCache and CachedChampion over a real MLflow store (SQLite in tmp_path) serving a real
ensemble: trained once per test process on real Binance candles through the training service,
then registered as many versions as a test needs (each version points at the trained model's
artifacts, so registering one costs milliseconds, loading one is a real pyfunc load).

The helpers here (trained_store, new_store) are shared by tests/services/test_ml.py and
tests/serving/test_ml_routes.py.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from core.features.build import build_features
from core.features.registry import FEATURE_NAMES
from infra.shared_data import locate_shared_data
from registry.mlflow_registry import FeatureSetMismatch, NoChampion, RegistryUnavailable
from registry.model_cache import CachedChampion, KeyedLocks, ModelCache, UnknownModel

NAME = "test-served"
SYMBOLS = ("BTC/USDT", "ETH/USDT")
CANDLES = 2000  # per symbol, 1h: the newest 801 feed a prediction, all of them the training
GENETRADER = locate_shared_data() / "ohlcv" / "genetrader-binance-spot-2024"


@dataclass(frozen=True)
class TrainedStore:
    uri: str  # the store training wrote: one version, its run and metrics
    name: str
    model_uri: str  # that version's artifacts
    feature_set: str
    candles: Mapping[str, pd.DataFrame]  # the real candles it was trained on
    empty_db: Path  # an initialised store with nothing in it (creating one costs seconds)


@functools.cache
def trained_store() -> TrainedStore:
    """Train the tree members (no sequence members: seconds, not minutes) on real candles,
    once per process, through the same service and composition a training run uses."""
    from infra.ledger.memory import MemoryLedger
    from infra.market_data.files import read_candle_file
    from infra.settings import Settings
    from services import bootstrap
    from services.training import train_and_register

    if not GENETRADER.is_dir():
        pytest.fail(f"real candles not found at {GENETRADER}: set TRADEFLOW_SHARED_DATA")
    root = Path(tempfile.mkdtemp(prefix="tradeflow-model-cache-"))
    atexit.register(shutil.rmtree, root, True)
    candles = {
        s: read_candle_file(GENETRADER / f"{s.replace('/', '_')}-1h.feather").head(CANDLES)
        for s in SYMBOLS
    }
    ledger = MemoryLedger()
    for symbol, frame in candles.items():
        ledger.candles.upsert("binance", symbol, "1h", frame)
    settings = Settings(
        var_dir=root / "var",
        symbols=SYMBOLS,
        whitelist=SYMBOLS,
        model_name="trained",
        model_members=("xgboost", "lightgbm"),
    )
    report = train_and_register(
        ledger, bootstrap.model_registry(settings), bootstrap.training_config(settings)
    )
    client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
    model_uri = client.get_model_version_download_uri("trained", report.registered.version)
    empty = root / "empty.db"
    MlflowClient(f"sqlite:///{empty}", registry_uri=f"sqlite:///{empty}").search_experiments()
    return TrainedStore(
        settings.tracking_uri, "trained", model_uri, report.feature_set_version, candles, empty
    )


@dataclass
class Store:
    """A store of its own for one test, whose versions all serve the trained model."""

    uri: str
    trained: TrainedStore
    client: MlflowClient = field(init=False)
    _names: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.client = MlflowClient(self.uri, registry_uri=self.uri)

    def register(self, name: str = NAME, feature_set: str | None = None) -> str:
        if name not in self._names:
            self.client.create_registered_model(name)
            self._names.add(name)
        fs = feature_set or self.trained.feature_set
        mv = self.client.create_model_version(
            name, self.trained.model_uri, tags={"feature_set_version": fs}
        )
        return str(mv.version)

    def move(self, alias: str, version: str, name: str = NAME) -> None:
        self.client.set_registered_model_alias(name, alias, version)

    def cache(self, **kwargs: Any) -> ModelCache:
        return ModelCache(self.trained.feature_set, tracking_uri=self.uri, **kwargs)


def new_store(folder: Path) -> Store:
    trained = trained_store()
    shutil.copy(trained.empty_db, folder / "mlflow.db")
    return Store(f"sqlite:///{folder / 'mlflow.db'}", trained)


def real_rows(n: int = 50) -> pd.DataFrame:
    """The newest `n` fully formed feature rows of the real BTC candles."""
    btc = trained_store().candles["BTC/USDT"]
    return build_features(btc, btc).loc[:, list(FEATURE_NAMES)].dropna().tail(n)


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return new_store(tmp_path)


# -- aliases and their TTL --------------------------------------------------------------------


def test_get_when_alias_moves_then_new_version_served_once_the_ttl_has_passed(store: Store) -> None:
    # Arrange
    v1, v2 = store.register(), store.register()
    store.move("champion", v1)
    clock = FakeTime()
    cache = store.cache(alias_ttl_s=30, clock=clock)
    assert cache.get(NAME, "champion").version == v1
    # Act
    store.move("champion", v2)
    clock.now += 29
    within = cache.get(NAME, "champion")
    clock.now += 2
    after = cache.get(NAME, "champion")
    # Assert
    assert within.version == v1  # MLflow not asked again inside the TTL
    assert after.version == v2
    stats = cache.stats()
    assert (stats.alias_lookups, stats.loads, stats.hits, stats.misses) == (2, 2, 1, 2)


def test_get_when_ttl_is_zero_then_alias_asked_at_every_get(store: Store) -> None:
    v1, v2 = store.register(), store.register()
    store.move("champion", v1)
    cache = store.cache(alias_ttl_s=0)
    first = cache.get(NAME, "champion")
    assert cache.get(NAME, "champion") is first
    store.move("champion", v2)
    assert cache.get(NAME, "champion").version == v2
    assert cache.stats().alias_lookups == 3


def test_get_when_version_number_given_then_registry_not_asked_for_aliases(store: Store) -> None:
    v1 = store.register()
    cache = store.cache()
    assert cache.get(NAME, v1).version == v1
    assert cache.get(NAME, "0" + v1).version == v1  # the same version, the same entry
    assert cache.stats().alias_lookups == 0
    assert cache.stats().loads == 1


# -- LRU --------------------------------------------------------------------------------------


def test_get_when_more_versions_than_size_then_least_recently_used_evicted(store: Store) -> None:
    v1, v2, v3 = store.register(), store.register(), store.register()
    cache = store.cache(size=2)
    cache.get(NAME, v1)
    cache.get(NAME, v2)
    cache.get(NAME, v1)  # v1 used last: v2 is now the least recently used
    cache.get(NAME, v3)
    assert cache.held() == [(NAME, v1), (NAME, v3)]
    assert cache.stats().evictions == 1
    cache.get(NAME, v2)  # loaded again; v1 goes
    assert cache.held() == [(NAME, v3), (NAME, v2)]
    stats = cache.stats()
    assert (stats.loads, stats.evictions, stats.hits, stats.held) == (4, 2, 1, 2)


def test_model_cache_when_size_below_one_then_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ModelCache("fs", size=0)
    with pytest.raises(ValueError, match="alias TTL"):
        ModelCache("fs", alias_ttl_s=-1)


# -- threads ----------------------------------------------------------------------------------


def test_get_when_eight_threads_ask_two_versions_then_each_loaded_once_in_parallel(
    store: Store,
) -> None:
    # Arrange: the loader is the real one, instrumented; it waits until both versions are
    # loading, so loads of different versions that ran one after the other would fail here.
    from registry.model_cache import _load_pyfunc

    v1, v2 = store.register(), store.register()
    both_loading = threading.Barrier(2, timeout=60)
    calls: list[str] = []

    def loader(client: Any, name: str, version: str) -> Any:
        calls.append(version)
        both_loading.wait()
        return _load_pyfunc(client, name, version)

    cache = store.cache(loader=loader)
    start = threading.Barrier(8)
    served: dict[int, Any] = {}

    def ask(i: int) -> None:
        start.wait()
        served[i] = cache.get(NAME, v1 if i % 2 else v2)

    # Act
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # Assert
    assert sorted(calls) == sorted([v1, v2])
    assert len(served) == 8
    assert len({id(served[i]) for i in range(1, 8, 2)}) == 1  # one object per version
    assert len({id(served[i]) for i in range(0, 8, 2)}) == 1
    stats = cache.stats()
    assert (stats.loads, stats.misses, stats.hits) == (2, 2, 6)


def test_keyed_locks_when_released_then_nothing_kept() -> None:
    locks = KeyedLocks()
    with locks.hold(("version", "m", "1")):
        assert len(locks) == 1
    assert len(locks) == 0


# -- refusals ---------------------------------------------------------------------------------


def test_get_when_version_alias_or_model_unknown_then_unknown_model(store: Store) -> None:
    store.register()
    cache = store.cache()
    with pytest.raises(UnknownModel, match="no version '7'"):
        cache.get(NAME, "7")
    with pytest.raises(UnknownModel, match="no alias 'staging'"):
        cache.get(NAME, "staging")
    with pytest.raises(UnknownModel, match="no registered model named 'nope'"):
        cache.get("nope", "champion")
    assert cache.stats().loads == 0


def test_get_when_model_registered_without_champion_then_no_champion(store: Store) -> None:
    store.register()
    with pytest.raises(NoChampion, match="run training first"):
        store.cache().get(NAME, "champion")


def test_get_when_feature_set_differs_then_refused_before_loading(store: Store) -> None:
    v1 = store.register(feature_set="0123456789abcdef")
    cache = store.cache()
    with pytest.raises(FeatureSetMismatch, match="0123456789abcdef"):
        cache.get(NAME, v1)
    assert cache.stats().loads == 0
    assert cache.held() == []


def test_get_when_loaded_for_another_feature_set_then_refused_on_a_hit(store: Store) -> None:
    v1 = store.register()
    cache = store.cache()
    cache.get(NAME, v1)
    with pytest.raises(FeatureSetMismatch, match="retrain before serving"):
        cache.get(NAME, v1, expected_feature_set="another")


def test_get_when_registry_does_not_answer_then_registry_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail at once, not in minutes
    cache = ModelCache("fs", tracking_uri="http://127.0.0.1:1")
    with pytest.raises(RegistryUnavailable, match="did not answer"):
        cache.get(NAME, "champion")
    with pytest.raises(RegistryUnavailable, match="did not answer"):
        cache.get(NAME, "3")


# -- CachedChampion: the decision flow's source -----------------------------------------------


def test_cached_champion_when_alias_moves_then_reloads_once(store: Store) -> None:
    # The ChampionCache test (tests/registry/test_mlflow_registry.py), over the shared cache.
    cache = store.cache()
    champion = CachedChampion(cache, NAME, store.trained.feature_set)
    with pytest.raises(NoChampion):
        champion.get()
    v1 = store.register()
    store.move("champion", v1)
    first = champion.get()
    assert champion.get() is first
    assert cache.stats().loads == 1
    probs = first.predict(real_rows())
    assert probs.shape == (50,)
    assert ((probs > 0) & (probs < 1)).all()
    v2 = store.register()
    store.move("champion", v2)  # as a person would in the MLflow UI
    assert champion.get().version == v2
    assert cache.stats().loads == 2


def test_cached_champion_when_it_sees_a_move_then_api_reads_of_the_alias_follow(
    store: Store,
) -> None:
    v1, v2 = store.register(), store.register()
    store.move("champion", v1)
    clock = FakeTime()
    cache = store.cache(alias_ttl_s=30, clock=clock)
    champion = CachedChampion(cache, NAME, store.trained.feature_set)
    assert cache.get(NAME, "champion").version == v1
    store.move("champion", v2)
    assert champion.get().version == v2  # a decision asks at once ...
    assert cache.get(NAME, "champion").version == v2  # ... and the API's reads share its answer
    assert cache.stats().loads == 2


def test_cached_champion_when_feature_set_differs_then_refuses(store: Store) -> None:
    v1 = store.register(feature_set="0123456789abcdef")
    store.move("champion", v1)
    with pytest.raises(FeatureSetMismatch, match="0123456789abcdef"):
        CachedChampion(store.cache(), NAME, store.trained.feature_set).get()


def test_served_model_when_same_rows_then_same_probabilities_as_mlflow_load(store: Store) -> None:
    import mlflow

    v1 = store.register()
    rows = real_rows()
    served = store.cache().get(NAME, v1)
    direct = mlflow.pyfunc.load_model(store.trained.model_uri).predict(rows)
    np.testing.assert_array_equal(served.predict(rows), np.asarray(direct, dtype=np.float64))


@pytest.mark.parametrize("threads", [1, 0])
def test_cache_when_a_model_is_loaded_then_torch_threads_set_unless_zero(
    store: Store, threads: int
) -> None:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        version = store.register()
        store.cache(torch_threads=threads).get(NAME, version)
        assert torch.get_num_threads() == (threads or 2)
    finally:
        torch.set_num_threads(before)
