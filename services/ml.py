"""Model use cases the API serves: list the registered models, and predict one row, either from
the candles stored in the ledger (the features the decision flow would compute at that candle)
or from a feature row the caller sends.

Written against small Protocols: the model cache and registry reader (registry/model_cache.py,
registry/model_catalog.py) and the ledger's candle store. Their errors are told apart by the
core error tree alone (RetryableError: could not ask; LookupError: no such thing; FatalError:
exists but cannot be served), and translated here into the errors below, which the routes map to
HTTP statuses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import pandas as pd

from core.errors import FatalError, RetryableError
from core.features.registry import FEATURE_NAMES
from core.ports import CandleStore, Model

CHAMPION = "champion"  # the alias the decision flow trades with (registry/mlflow_registry.py)
# The candle itself plus the window after which every feature equals its full-history value:
# the same candles the decision flow computes the newest candle's features on.
# (core.features.build.INCREMENTAL_WINDOW + 1; TA-Lib loads with that module, and the API must
# start without it: a test checks the two agree.)
CANDLES_PER_PREDICTION = 801

T = TypeVar("T")


# -- errors -----------------------------------------------------------------------------------


class ModelNotFound(FatalError, LookupError):
    """The caller named a model, version or alias the registry does not have."""


class CandleNotFound(FatalError, LookupError):
    """No candle of that symbol is stored at that time (or no reference candles before it)."""


class InvalidFeatures(FatalError, ValueError):
    """A feature row the model cannot be given; each list names the features concerned."""

    def __init__(
        self,
        context: str,
        missing: Sequence[str] = (),
        not_finite: Sequence[str] = (),
        unknown: Sequence[str] = (),
    ) -> None:
        self.missing, self.not_finite, self.unknown = list(missing), list(not_finite), list(unknown)
        parts = [
            f"{label}: {', '.join(names)}"
            for label, names in (
                ("missing", self.missing),
                ("not finite", self.not_finite),
                ("unknown", self.unknown),
            )
            if names
        ]
        super().__init__(f"{context}: {'; '.join(parts)}")


class NoServableModel(FatalError):
    """Nothing to serve: no champion yet, or the model was trained on another feature set."""


class RegistryDown(RetryableError):
    """The model registry (or its artifact store) did not answer: try again later."""


# -- ports ------------------------------------------------------------------------------------


class ModelSource(Protocol):
    """registry.model_cache.ModelCache: a model by name and version number or alias."""

    def get(self, name: str, alias_or_version: str) -> Model: ...


class VersionRecord(Protocol):
    """registry.model_catalog.CatalogVersion."""

    @property
    def version(self) -> str: ...
    @property
    def aliases(self) -> Sequence[str]: ...
    @property
    def status(self) -> str: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def run_id(self) -> str | None: ...
    @property
    def created_ms(self) -> int | None: ...


class RegistryReader(Protocol):
    """registry.model_catalog.MlflowCatalog."""

    def model_names(self) -> list[str]: ...

    def versions(self, name: str) -> Sequence[VersionRecord]: ...

    def runs_metrics(self, run_ids: Sequence[str]) -> Mapping[str, Mapping[str, float]]: ...


class CandleLedger(Protocol):
    candles: CandleStore


# -- values -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: str
    aliases: tuple[str, ...]
    status: str  # the registry's: READY once the version can be loaded
    promotion: str | None  # champion | rejected, set by training's promotion step
    promotion_reason: str | None
    feature_set_version: str | None
    created_at: datetime | None
    run_id: str | None
    metrics: Mapping[str, float]  # the training run's: ensemble_validation_auc, ...
    tags: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    versions: tuple[VersionInfo, ...]  # newest first

    @property
    def aliases(self) -> dict[str, str]:
        return {a: v.version for v in self.versions for a in v.aliases}


@dataclass(frozen=True, slots=True)
class ModelRef:
    """Which model: `name` (None: the configured one) at `version`, a number or an alias
    (None: champion)."""

    name: str | None = None
    version: str | None = None

    @property
    def explicit(self) -> bool:
        return self.name is not None or self.version is not None


@dataclass(frozen=True, slots=True)
class CandleQuery:
    symbol: str
    candle_time: datetime  # the candle's open time; naive means UTC
    model: ModelRef = field(default_factory=ModelRef)


@dataclass(frozen=True, slots=True)
class FeatureQuery:
    features: Mapping[str, float | None]
    model: ModelRef = field(default_factory=ModelRef)


PredictRequest = CandleQuery | FeatureQuery


@dataclass(frozen=True, slots=True)
class PredictConfig:
    """Where candles are read from, and the model served when the request names none."""

    exchange: str
    timeframe: str
    reference_symbol: str
    model_name: str


@dataclass(frozen=True, slots=True)
class Prediction:
    probability: float  # the model's P(label = 1), as the decision flow reads it
    model_name: str
    model_version: str
    feature_set_version: str
    symbol: str | None = None
    candle_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class MlService:
    """What the routes hold: the shared model cache, the registry reader, the ledger."""

    cache: ModelSource
    catalog: RegistryReader
    ledger: CandleLedger
    config: PredictConfig

    def models(self) -> list[ModelInfo]:
        return list_models(self.catalog)

    def predict(self, request: PredictRequest) -> Prediction:
        return predict(self.cache, self.ledger, request, self.config)


# -- use cases --------------------------------------------------------------------------------


def list_models(registry_reader: RegistryReader) -> list[ModelInfo]:
    """Every registered model with its versions (newest first), aliases, promotion tags and
    the metrics of the run that trained each version."""
    return _answered(
        lambda: [_model_info(registry_reader, n) for n in registry_reader.model_names()]
    )


def predict(
    cache: ModelSource, ledger: CandleLedger, request: PredictRequest, config: PredictConfig
) -> Prediction:
    """The model's probability for one row. A candle's features are built from the stored
    candles up to and including it and given to the model by the decision flow's own call, so
    the answer is what a decision at that candle reads; a feature row is checked first (every
    feature, finite, no others). Either is refused before the registry is asked."""
    if isinstance(request, FeatureQuery):
        row = feature_row(request.features)
        model = served_model(cache, request.model, config)
        return _prediction(model, float(model.predict(row)[0]))
    at = _utc(request.candle_time)
    features = candle_features(ledger, config, request.symbol, at)
    model = served_model(cache, request.model, config)
    # The decision flow's model call (which rows, in what shape): the two cannot drift.
    from services.decide.batch import predict_at_times

    by_symbol = predict_at_times(model, {request.symbol: features}, pd.DatetimeIndex([at]))
    return _prediction(model, float(by_symbol[request.symbol].iloc[-1]), request.symbol, at)


def served_model(cache: ModelSource, ref: ModelRef, config: PredictConfig) -> Model:
    name = ref.name or config.model_name
    try:
        return cache.get(name, ref.version or CHAMPION)
    except RetryableError as exc:
        raise RegistryDown(f"model registry did not answer: {type(exc).__name__}") from exc
    except LookupError as exc:
        if ref.explicit:
            raise ModelNotFound(str(exc)) from exc
        # The configured model before its first training: nothing to serve yet.
        raise NoServableModel(f"{exc}: run training first") from exc
    except FatalError as exc:  # no champion alias, or another feature set than this code's
        raise NoServableModel(str(exc)) from exc


def feature_row(values: Mapping[str, float | None]) -> pd.DataFrame:
    """One row with exactly the model's features, in its order; refused naming every missing,
    non-finite (NaN, infinite, null) and unknown name at once."""
    names = list(FEATURE_NAMES)
    missing = [n for n in names if n not in values]
    not_finite = [n for n in names if n in values and not _finite(values[n])]
    unknown = sorted(set(values) - set(names))
    if missing or not_finite or unknown:
        raise InvalidFeatures("feature row refused", missing, not_finite, unknown)
    return pd.DataFrame([[float(values[n]) for n in names]], columns=names, dtype="float64")  # type: ignore[arg-type]


def candle_features(
    ledger: CandleLedger, config: PredictConfig, symbol: str, at: datetime
) -> pd.DataFrame:
    """The feature frame of the stored `symbol` candles up to the one opened at `at` (its
    last row), the reference symbol's candles feeding the cross-asset features as in
    services/decide/batch.py; refused when that last row is not fully formed."""
    frame = _candles(ledger, config, symbol, at)
    if frame.empty or pd.Timestamp(frame["open_time"].iloc[-1]) != pd.Timestamp(at):
        raise CandleNotFound(
            f"no {symbol} {config.timeframe} candle stored at {at.isoformat()} on {config.exchange}"
        )
    reference = (
        frame
        if symbol == config.reference_symbol
        else _candles(ledger, config, config.reference_symbol, at)
    )
    if reference.empty:
        raise CandleNotFound(
            f"no {config.reference_symbol} candles (the cross-asset reference) stored up to "
            f"{at.isoformat()} on {config.exchange}"
        )
    from core.features.build import build_features  # TA-Lib: only when a candle is asked for

    features = build_features(frame, reference)
    last = features.iloc[-1]
    not_finite = [n for n in FEATURE_NAMES if not _finite(last[n])]
    if not_finite:
        raise InvalidFeatures(
            f"{symbol} at {at.isoformat()}: features not formed yet ({len(frame)} candles "
            f"stored up to it, a feature needs up to {CANDLES_PER_PREDICTION})",
            not_finite=not_finite,
        )
    return features


def _candles(
    ledger: CandleLedger, config: PredictConfig, symbol: str, at: datetime
) -> pd.DataFrame:
    return ledger.candles.load(
        config.exchange, symbol, config.timeframe, until=at, limit=CANDLES_PER_PREDICTION
    )


def _prediction(
    model: Model, probability: float, symbol: str | None = None, at: datetime | None = None
) -> Prediction:
    return Prediction(probability, model.name, model.version, model.feature_set_version, symbol, at)


def _model_info(reader: RegistryReader, name: str) -> ModelInfo:
    versions = reader.versions(name)
    # One registry query for every version's run, not one per version.
    metrics = reader.runs_metrics([v.run_id for v in versions if v.run_id])
    return ModelInfo(name, tuple(_version_info(v, metrics) for v in versions))


def _version_info(v: VersionRecord, metrics: Mapping[str, Mapping[str, float]]) -> VersionInfo:
    tags = dict(v.tags)
    created = None if v.created_ms is None else datetime.fromtimestamp(v.created_ms / 1000, UTC)
    return VersionInfo(
        version=v.version,
        aliases=tuple(v.aliases),
        status=v.status,
        promotion=tags.get("promotion"),
        promotion_reason=tags.get("promotion_reason"),
        feature_set_version=tags.get("feature_set_version"),
        created_at=created,
        run_id=v.run_id,
        metrics=dict(metrics.get(v.run_id, {})) if v.run_id else {},
        tags=tags,
    )


def _answered(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except RetryableError as exc:
        raise RegistryDown(f"model registry did not answer: {type(exc).__name__}") from exc


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
