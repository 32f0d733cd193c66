"""One LRU cache of loaded registered models per process, shared by the API and the decision
flow, so a version is read from the artifact store once however many callers ask for it.

Entries are keyed by (name, version). An alias (`champion`) is resolved to a version by asking
MLflow at most every `alias_ttl_s` seconds; the decision flow's adapter (CachedChampion) asks
at every decision, so a manual alias move in the MLflow UI is honoured at the next candle.

MLflow (and through the pickled model, xgboost and lightgbm) is imported by the first call that
needs it, not by this module: the API builds its cache at start-up and starts without them.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import FatalError

if TYPE_CHECKING:
    from registry.mlflow_registry import ServedModel

DEFAULT_SIZE = 4
DEFAULT_ALIAS_TTL_S = 30.0

Loader = Callable[[Any, str, str], Any]  # (client, name, version) -> a pyfunc model


class UnknownModel(FatalError, LookupError):
    """No registered model, version or alias of that name (as opposed to one that exists but
    cannot be served, or a registry that did not answer)."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int  # gets answered from memory (including after waiting for another thread's load)
    misses: int  # gets that had to load
    loads: int  # versions loaded successfully
    evictions: int  # least recently used versions dropped to stay within `size`
    alias_lookups: int  # times MLflow was asked where an alias points
    held: int  # versions in memory now


@dataclass(frozen=True, slots=True)
class _Entry:
    served: ServedModel
    meta: Any  # MLflow's ModelVersion: its tags carry the feature-set version


@dataclass(frozen=True, slots=True)
class _Alias:
    version: str
    asked_at: float  # clock reading when MLflow was asked (before it answered)


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


class KeyedLocks:
    """A lock per key, dropped when nobody holds or waits for it: keys come from requests, so
    a lock kept for every name ever asked for would let callers grow memory without bound."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._slots: dict[Hashable, _Slot] = {}

    @contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        with self._guard:
            slot = self._slots.setdefault(key, _Slot())
            slot.users += 1
        try:
            with slot.lock:
                yield
        finally:
            with self._guard:
                slot.users -= 1
                if slot.users == 0:
                    del self._slots[key]

    def __len__(self) -> int:
        with self._guard:
            return len(self._slots)


def _load_pyfunc(client: Any, name: str, version: str) -> Any:
    import mlflow

    # The version's own artifact location: it loads from this cache's store even when the
    # process-wide MLflow URI points elsewhere.
    return mlflow.pyfunc.load_model(client.get_model_version_download_uri(name, version))


class ModelCache:
    """Loaded pyfunc models by (name, version), at most `size` of them, least recently used
    dropped first. Thread-safe: one lock per version, so concurrent callers of one version wait
    for a single load while loads of different versions run in parallel."""

    def __init__(
        self,
        expected_feature_set: str,
        size: int = DEFAULT_SIZE,
        alias_ttl_s: float = DEFAULT_ALIAS_TTL_S,
        *,
        tracking_uri: str | None = None,
        loader: Loader = _load_pyfunc,
        clock: Callable[[], float] = time.monotonic,
        torch_threads: int = 0,
    ) -> None:
        if size < 1:
            raise ValueError(f"model cache size must be at least 1, got {size}")
        if alias_ttl_s < 0:
            raise ValueError(f"alias TTL must be 0 (ask every time) or more, got {alias_ttl_s}")
        self.expected_feature_set = expected_feature_set
        self.size = size
        self.alias_ttl_s = alias_ttl_s
        self._tracking_uri = tracking_uri
        self._loader = loader
        self._clock = clock
        self._lock = threading.Lock()  # guards the maps and counters below, never held on I/O
        self._models: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._aliases: dict[tuple[str, str], _Alias] = {}
        self._locks = KeyedLocks()
        self._counts = dict.fromkeys(("hits", "misses", "loads", "evictions", "alias_lookups"), 0)
        self._client_obj: Any = None
        self.torch_threads = torch_threads

    def get(
        self, name: str, alias_or_version: str, expected_feature_set: str | None = None
    ) -> ServedModel:
        """The model `name` at a version number ("3") or an alias ("champion"); refused
        (FeatureSetMismatch) when it was trained on another feature set than expected."""
        from registry.mlflow_registry import checked_feature_set

        expected = expected_feature_set or self.expected_feature_set
        if alias_or_version.isascii() and alias_or_version.isdigit():
            version = str(int(alias_or_version))  # "03" and "3": one version, one entry
        else:
            version = self.resolve(name, alias_or_version)
        entry = self._entry(name, version, expected)
        checked_feature_set(name, entry.meta, expected)  # a hit loaded for another caller
        return entry.served

    def resolve(self, name: str, alias: str, max_age_s: float | None = None) -> str:
        """The version `alias` points to, as MLflow answered at most `max_age_s` seconds ago
        (default: the cache's TTL; 0 asks now)."""
        ttl = self.alias_ttl_s if max_age_s is None else max_age_s
        key = (name, alias)
        known = self._fresh_alias(key, ttl)
        if known is not None:
            return known
        with self._locks.hold(("alias", name, alias)):
            known = self._fresh_alias(key, ttl)  # asked by another thread while this one waited
            if known is not None:
                return known
            asked_at = self._clock()
            version = self._ask_alias(name, alias)
            with self._lock:
                self._aliases[key] = _Alias(version, asked_at)
                self._counts["alias_lookups"] += 1
            return version

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(**self._counts, held=len(self._models))

    def held(self) -> list[tuple[str, str]]:
        """(name, version) in memory, least recently used first."""
        with self._lock:
            return list(self._models)

    def _fresh_alias(self, key: tuple[str, str], ttl: float) -> str | None:
        with self._lock:
            known = self._aliases.get(key)
        if known is None or self._clock() - known.asked_at >= ttl:
            return None
        return known.version

    def _entry(self, name: str, version: str, expected: str) -> _Entry:
        key = (name, version)
        entry = self._hit(key)
        if entry is not None:
            return entry
        with self._locks.hold(("version", name, version)):
            entry = self._hit(key)  # loaded by another thread while this one waited
            if entry is not None:
                return entry
            with self._lock:
                self._counts["misses"] += 1
            entry = self._load(name, version, expected)  # outside the cache lock: slow I/O
            self._store(key, entry)
            return entry

    def _hit(self, key: tuple[str, str]) -> _Entry | None:
        with self._lock:
            entry = self._models.get(key)
            if entry is not None:
                self._models.move_to_end(key)
                self._counts["hits"] += 1
            return entry

    def _store(self, key: tuple[str, str], entry: _Entry) -> None:
        with self._lock:
            self._models[key] = entry
            self._models.move_to_end(key)
            self._counts["loads"] += 1
            while len(self._models) > self.size:
                self._models.popitem(last=False)
                self._counts["evictions"] += 1

    def _load(self, name: str, version: str, expected: str) -> _Entry:
        from mlflow.exceptions import MlflowException

        from registry.mlflow_registry import RegistryUnavailable, ServedModel, checked_feature_set

        meta = self._ask_version(name, version)
        # Checked before loading: a model that cannot be served never takes a slot.
        fs = checked_feature_set(name, meta, expected)
        try:
            model = self._loader(self._client(), name, version)
        except (MlflowException, OSError) as exc:
            raise RegistryUnavailable(
                f"could not load {name} v{version} from the artifact store: {exc}"
            ) from exc
        self._limit_torch_threads()
        return _Entry(ServedModel(name, str(meta.version), fs, model), meta)

    def _limit_torch_threads(self) -> None:
        """Once a model with torch members is loaded: one-row predictions on a busy machine
        wait on torch's thread pool (bench/predict.py: p99 124 ms with the default threads on
        2 loaded cores, 1.6 ms with one). 0 keeps torch's default."""
        torch = sys.modules.get("torch")
        if self.torch_threads and torch is not None:
            torch.set_num_threads(self.torch_threads)

    def _ask_version(self, name: str, version: str) -> Any:
        from mlflow.exceptions import MlflowException

        from registry.mlflow_registry import NOT_THERE, RegistryUnavailable

        try:
            return self._client().get_model_version(name, version)
        except MlflowException as exc:
            if exc.error_code in NOT_THERE:
                raise UnknownModel(f"model {name!r} has no version {version!r}") from exc
            raise RegistryUnavailable(f"model registry did not answer: {exc}") from exc

    def _ask_alias(self, name: str, alias: str) -> str:
        from mlflow.exceptions import MlflowException

        from registry.mlflow_registry import CHAMPION, NOT_THERE, NoChampion, RegistryUnavailable

        try:
            return str(self._client().get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if exc.error_code not in NOT_THERE:
                raise RegistryUnavailable(f"model registry did not answer: {exc}") from exc
            missing = exc
        if not self._registered(name):
            raise UnknownModel(f"no registered model named {name!r}") from missing
        if alias == CHAMPION:
            raise NoChampion(
                f"no '{CHAMPION}' alias on model {name!r}: run training first"
            ) from missing
        raise UnknownModel(f"model {name!r} has no alias {alias!r}") from missing

    def _registered(self, name: str) -> bool:
        from mlflow.exceptions import MlflowException

        from registry.mlflow_registry import NOT_THERE, RegistryUnavailable

        try:
            self._client().get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code in NOT_THERE:
                return False
            raise RegistryUnavailable(f"model registry did not answer: {exc}") from exc
        return True

    def _client(self) -> Any:
        if self._client_obj is None:  # a race builds two equivalent clients: harmless
            from mlflow import MlflowClient

            uri = self._tracking_uri
            self._client_obj = MlflowClient(uri, registry_uri=uri) if uri else MlflowClient()
        return self._client_obj


class CachedChampion:
    """core.ports.ChampionSource over a shared ModelCache, behaving like ChampionCache: the
    alias is asked at every get (a decision runs once a candle; a manual move in the MLflow UI
    must count at the next one), the model is loaded only when it points to a version the
    cache does not hold."""

    def __init__(self, cache: ModelCache, name: str, expected_feature_set: str) -> None:
        self.cache = cache
        self.name = name
        self.expected_feature_set = expected_feature_set

    def get(self) -> ServedModel:
        from registry.mlflow_registry import CHAMPION, NoChampion

        try:
            version = self.cache.resolve(self.name, CHAMPION, max_age_s=0)
        except UnknownModel as exc:  # nothing trained yet: the decision flow's "no champion"
            raise NoChampion(
                f"no '{CHAMPION}' alias on model {self.name!r}: run training first"
            ) from exc
        return self.cache.get(self.name, version, self.expected_feature_set)
