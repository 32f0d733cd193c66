"""Drift watch: does the market the champion decides on still look like the one it learned?

Reference: the champion's training window, read from its training run's `range_train` tag
(the split the model was fit on, for versions trained on a train/validation/test split) or
else its version's `data_range` tag (the rows a version refit on everything saw), features
recomputed from the ledger's candles, at most `reference_rows` newest rows, plus the
champion's predictions on them. Current: the newest `window_candles` closed candles of every
symbol, with predictions. evidently's DataDriftPreset compares the two column by column; the
share of drifted features against `threshold` says drift, and drift asks for retraining at
most once per `debounce`. Labels of current rows whose horizon has passed give the AUC now,
beside the AUC the training run measured out of sample, and the label's base rate now, beside
its rate on the reference rows (target drift: a two-proportion z-test; it is reported, and
does not by itself ask for retraining).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.candles.timeframe import timeframe_delta
from core.errors import ConfigurationError, FatalError
from core.features.build import INCREMENTAL_WINDOW, build_features
from core.features.registry import FEATURE_NAMES, FEATURES
from core.labels import TripleBarrier, touches_filled
from core.models.dataset import LabelSpec
from core.ports import CandleStore, ChampionSource, DriftCheckStore, Ledger, Model, ModelRegistry
from core.records import DriftCheck

PREDICTION = "prediction"
LABEL = "label"
# Calendar features are functions of the clock, not of the market: a window in May always
# "drifts" in month_sin from one in March. They are left out of the comparison.
CALENDAR = frozenset(f.name for f in FEATURES if f.group == "time")
DRIFT_FEATURES: tuple[str, ...] = tuple(n for n in FEATURE_NAMES if n not in CALENDAR)
# Out-of-sample AUC the training run logged: out of fold (stacked ensemble), else on the
# held-out test split (versions trained on a train/validation/test split).
REFERENCE_AUC_METRICS = ("ensemble_oof_auc", "ensemble_test_auc")
REPORT_FOLDER = "drift"


class DriftConfigError(ConfigurationError):
    pass


class NoReferenceWindow(FatalError):
    """The champion carries no tag saying which candles it was trained on."""


class NotEnoughRows(FatalError):
    """A window has too few complete feature rows to compare."""


@dataclass(frozen=True, slots=True)
class DriftConfig:
    exchange: str
    symbols: tuple[str, ...]
    timeframe: str
    reference_symbol: str
    window_candles: int = 500  # per symbol
    reference_rows: int = 5000  # all symbols together, newest of the training window
    threshold: float = 0.5  # share of drifted features that counts as drift
    debounce: timedelta = timedelta(hours=24)
    label_horizon: int = 4  # candles
    fee_threshold: float = 0.002  # the log return a label must beat
    barrier: TripleBarrier | None = None  # the training label's, when it is a triple barrier
    # Per feature: normed Wasserstein distance (numeric) or Jensen-Shannon distance
    # (categorical) at or above this is drift. Both methods are fixed so that the meaning of
    # the threshold does not flip: evidently's default switches numeric columns to a K-S
    # p-value (drift when *below* the threshold) under 1,000 reference rows. Measured on
    # BTC+ETH 1h, 5,000 reference rows vs 500 candles each, at 0.2: 2021 vs May 2024 67 % of
    # features drift, Jan-Apr vs May 2024 40 %; at evidently's 0.1, about 79 % and 67 %: a
    # nearby window of the same market would count as drift too.
    column_threshold: float = 0.2
    min_rows: int = 50  # fewest rows a window, or the matured labels for an AUC, may have
    # |z| of the two-proportion test above which the label's base rate moved: 3 rather than
    # 1.96, as labels of overlapping horizons and of co-moving symbols are not independent
    # draws, so the test's standard error is too small and z reads high.
    target_z: float = 3.0
    report_dir: Path | None = None  # where the HTML report goes; None: not written

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbols", tuple(self.symbols))
        problems = []
        if self.reference_symbol not in self.symbols:
            problems.append(f"reference symbol {self.reference_symbol} not in {self.symbols}")
        if min(self.window_candles, self.reference_rows, self.label_horizon, self.min_rows) < 1:
            problems.append("window_candles, reference_rows, label_horizon, min_rows must be >= 1")
        if not 0 < self.threshold <= 1:
            problems.append(f"threshold {self.threshold} is a share: 0 < threshold <= 1")
        if self.column_threshold <= 0:
            problems.append(f"column_threshold {self.column_threshold} must be > 0")
        if self.target_z <= 0:
            problems.append(f"target_z {self.target_z} must be > 0")
        if self.debounce < timedelta(0):
            problems.append(f"debounce {self.debounce} is negative")
        if problems:
            raise DriftConfigError("drift config: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"window ends ({self.end}) before it starts ({self.start})")


@dataclass(frozen=True, slots=True)
class ColumnDrift:
    column: str
    score: float
    method: str
    drifted: bool


@dataclass(frozen=True, slots=True)
class DriftReport:
    check: DriftCheck
    retrain: bool  # drift, and no retraining triggered within the debounce
    reason: str
    reference_source: str  # the tag the reference window came from
    auc_reference_source: str  # the metric the reference AUC came from
    columns: tuple[ColumnDrift, ...] = ()  # every compared column
    target_z: float | None = None  # the base-rate test's z, current minus reference


@dataclass(frozen=True, slots=True)
class TargetDrift:
    """The label's base rate on the matured current rows and on the reference rows; all None
    under `min_rows` known labels on either side."""

    rate_current: float | None = None
    rate_reference: float | None = None
    z: float | None = None
    drifted: bool | None = None


# -- the check ----------------------------------------------------------------------------------


def check_drift(
    ledger: Ledger,
    champion_source: ChampionSource,
    registry: ModelRegistry,
    cfg: DriftConfig,
    now: datetime,
) -> DriftReport:
    """Compare the champion's training window with the newest candles; decide on retraining.
    Reads the ledger's candles and drift checks, and the registry's record of the training."""
    model = champion_source.get()
    window, source = reference_window(registry.version_tags(model.name, model.version))
    reference = window_rows(ledger.candles, cfg, window)
    current = current_rows(ledger.candles, cfg, now)
    reference = reference.assign(**{PREDICTION: predict(model, reference)})
    current = current.assign(**{PREDICTION: predict(model, current)})
    target = target_drift(reference, current, cfg.min_rows, cfg.target_z)
    # The label goes into evidently's report only once enough of it has matured.
    with_label = target.drifted is not None
    columns, snapshot = compare(reference, current, cfg.column_threshold, with_label)
    auc_current, matured = matured_auc(current, cfg.min_rows)
    auc_reference, auc_source = reference_auc(
        registry.run_metrics(model.name, model.version), reference, cfg.min_rows
    )
    check = _check(model, now, reference, current, columns, cfg.threshold)
    check = replace(
        check,
        matured_rows=matured,
        auc_current=auc_current,
        auc_reference=auc_reference,
        report_path=_save_html(snapshot, cfg.report_dir, model, now),
        target_rate_current=target.rate_current,
        target_rate_reference=target.rate_reference,
        target_drift=target.drifted,
    )
    last = ledger.drift.last_triggered(model.name)
    retrain, reason = retrain_decision(check, last, now, cfg)
    return DriftReport(check, retrain, reason, source, auc_source, columns, target.z)


def reference_window(tags: Mapping[str, str]) -> tuple[Window, str]:
    """The training window a version's tags name, and the tag it came from."""
    for key in ("range_train", "data_range"):
        text = tags.get(key, "")
        if text:
            return parse_window(text, key), key
    raise NoReferenceWindow(
        "the champion has neither a range_train nor a data_range tag: cannot tell which "
        "candles it was trained on (retrain it with this version of the code)"
    )


def parse_window(text: str, what: str = "window") -> Window:
    """'START .. END' as the training tags write it (pandas timestamps, UTC)."""
    start, sep, end = text.partition(" .. ")
    try:
        if not sep:
            raise ValueError("no ' .. ' between start and end")
        return Window(_utc(start), _utc(end))
    except ValueError as exc:
        raise NoReferenceWindow(f"{what} tag {text!r} is not 'START .. END': {exc}") from exc


def _utc(text: str) -> datetime:
    stamp = pd.Timestamp(text.strip())
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def window_rows(candles: CandleStore, cfg: DriftConfig, window: Window) -> pd.DataFrame:
    """Feature rows (and labels) of every symbol in `window`, the newest `reference_rows` of
    them all, indexed by (symbol, open_time)."""
    step = timeframe_delta(cfg.timeframe)
    until = window.end + step * cfg.label_horizon  # the labels at the window's end read these
    limit = cfg.reference_rows + INCREMENTAL_WINDOW + cfg.label_horizon
    frames = {
        s: candles.load(cfg.exchange, s, cfg.timeframe, until=until, limit=limit)
        for s in cfg.symbols
    }
    start, end = pd.Timestamp(window.start), pd.Timestamp(window.end)
    parts = {s: rows.loc[start:end] for s, rows in symbol_rows(frames, cfg).items()}
    pooled = _stack(parts, "reference", window, cfg.min_rows)
    newest = np.argsort(pooled.index.get_level_values("open_time").asi8, kind="stable")
    return pooled.iloc[newest[-cfg.reference_rows :]].sort_index()


def current_rows(candles: CandleStore, cfg: DriftConfig, now: datetime) -> pd.DataFrame:
    """Feature rows (and labels, where the horizon has passed) of the newest `window_candles`
    candles of every symbol that had closed at `now`."""
    until = now - timeframe_delta(cfg.timeframe)  # a candle that opened then has closed by now
    limit = cfg.window_candles + INCREMENTAL_WINDOW
    frames = {
        s: candles.load(cfg.exchange, s, cfg.timeframe, until=until, limit=limit)
        for s in cfg.symbols
    }
    parts = {s: rows.tail(cfg.window_candles) for s, rows in symbol_rows(frames, cfg).items()}
    return _stack(parts, "current", Window(until, until), cfg.min_rows)


def symbol_rows(frames: Mapping[str, pd.DataFrame], cfg: DriftConfig) -> dict[str, pd.DataFrame]:
    """Features and label of each symbol's candles, indexed by open_time. A label is NaN where
    the candle `label_horizon` later is not stored yet, or a synthetic (filled) candle lies
    between: the same rows training keeps."""
    empty = [s for s, f in frames.items() if f.empty]
    if empty:
        raise NotEnoughRows(
            f"no {cfg.timeframe} candles of {empty} on {cfg.exchange} in the window: "
            "run the ingest flow first"
        )
    horizon = timeframe_delta(cfg.timeframe) * cfg.label_horizon
    reference = frames[cfg.reference_symbol]
    out = {}
    for symbol, candles in frames.items():
        # The label the model learned (fixed horizon or triple barrier), as training builds it.
        label = LabelSpec(horizon, cfg.fee_threshold, cfg.barrier).label(candles)
        if "is_filled" in candles:
            label = label.mask(touches_filled(candles, horizon))
        out[symbol] = build_features(candles, reference).join(label.rename(LABEL))
    return out


def _stack(
    parts: Mapping[str, pd.DataFrame], what: str, window: Window, min_rows: int
) -> pd.DataFrame:
    """Rows with every feature known (warm-up rows are not), indexed by (symbol, open_time)."""
    rows = pd.concat(parts, names=["symbol", "open_time"]).dropna(subset=list(FEATURE_NAMES))
    if len(rows) < min_rows:
        raise NotEnoughRows(
            f"{len(rows)} complete feature rows in the {what} window ({window.start} .. "
            f"{window.end}), fewer than {min_rows}: too few to compare"
        )
    return rows


def predict(model: Model, rows: pd.DataFrame) -> np.ndarray:
    """The model's probabilities, each symbol's rows in time order in one call, as the
    decision code asks for them."""
    return np.asarray(model.predict(rows.loc[:, list(FEATURE_NAMES)]), dtype=np.float64)


# -- evidently ----------------------------------------------------------------------------------


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    column_threshold: float,
    with_label: bool = False,
) -> tuple[tuple[ColumnDrift, ...], Any]:
    """evidently's DataDriftPreset over the drift features, the prediction and, `with_label`,
    the label; returns each column's verdict and the snapshot (for its HTML)."""
    from evidently import Dataset, Report  # ~3 s to import: only a drift check pays it
    from evidently.presets import DataDriftPreset

    columns = [*DRIFT_FEATURES, PREDICTION, *([LABEL] if with_label else [])]
    definition = data_definition(with_label)
    preset = DataDriftPreset(
        num_method="wasserstein",
        cat_method="jensenshannon",
        threshold=column_threshold,
    )
    snapshot = Report([preset], include_tests=True).run(
        current_data=Dataset.from_pandas(
            current.loc[:, columns].reset_index(drop=True), definition
        ),
        reference_data=Dataset.from_pandas(
            reference.loc[:, columns].reset_index(drop=True), definition
        ),
    )
    return column_drifts(snapshot.dict()), snapshot


def data_definition(with_label: bool) -> Any:
    """The columns' types and roles, declared rather than guessed from dtypes: every feature
    and the prediction numeric; the label a 0/1 category (as a float column with NaN evidently
    would infer it numeric) and the target of a binary classification whose probability is
    the prediction. DataDriftPreset compares the label as it does any categorical column (its
    ValueDrift ignores roles, NaN rows of unmatured labels are dropped); the role names it in
    the snapshot. evidently 0.7 has no target-drift preset of its own."""
    from evidently import BinaryClassification, DataDefinition

    numerical = [*DRIFT_FEATURES, PREDICTION]
    if not with_label:
        return DataDefinition(numerical_columns=numerical)
    return DataDefinition(
        numerical_columns=numerical,
        categorical_columns=[LABEL],
        classification=[BinaryClassification(target=LABEL, prediction_probas=PREDICTION)],
    )


def column_drifts(result: Mapping[str, Any]) -> tuple[ColumnDrift, ...]:
    """Per column: the ValueDrift metric's score and method, and its test's verdict (FAIL is
    drift; a test, not the score, so the direction of each method is evidently's)."""
    failed = {
        t["metric_config"]["params"]["column"]
        for t in result.get("tests", [])
        if _is_value_drift(t["metric_config"]["params"]) and t["status"] == "FAIL"
    }
    return tuple(
        ColumnDrift(
            column=m["config"]["column"],
            score=float(m["value"]),
            method=str(m["config"].get("method", "")),
            drifted=m["config"]["column"] in failed,
        )
        for m in result["metrics"]
        if _is_value_drift(m["config"])
    )


def _is_value_drift(config: Mapping[str, Any]) -> bool:
    return str(config.get("type", "")).endswith(":ValueDrift")


def _save_html(snapshot: Any, folder: Path | None, model: Model, now: datetime) -> str | None:
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", model.name)
    path = folder / f"drift-{safe}-v{model.version}-{now:%Y%m%dT%H%M%SZ}.html"
    snapshot.save_html(str(path))
    return str(path)


# -- numbers and the decision ---------------------------------------------------------------------


def _check(
    model: Model,
    now: datetime,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[ColumnDrift],
    threshold: float,
) -> DriftCheck:
    by_name = {c.column: c for c in columns}
    features = [by_name[n] for n in DRIFT_FEATURES if n in by_name]
    drifted = tuple(c.column for c in features if c.drifted)
    share = len(drifted) / len(features) if features else 0.0
    prediction = by_name.get(PREDICTION)
    ref_times = reference.index.get_level_values("open_time")
    cur_times = current.index.get_level_values("open_time")
    return DriftCheck(
        checked_at=now,
        model_name=model.name,
        model_version=model.version,
        reference_start=ref_times.min().to_pydatetime(),
        reference_end=ref_times.max().to_pydatetime(),
        current_start=cur_times.min().to_pydatetime(),
        current_end=cur_times.max().to_pydatetime(),
        reference_rows=len(reference),
        current_rows=len(current),
        share_drifted=share,
        dataset_drift=share >= threshold,
        prediction_drift=bool(prediction and prediction.drifted),
        prediction_score=None if prediction is None else prediction.score,
        drifted_columns=drifted,
        matured_rows=0,
        auc_current=None,
        auc_reference=None,
    )


def matured_auc(rows: pd.DataFrame, min_rows: int) -> tuple[float | None, int]:
    """AUC of the predictions against the labels known so far, and how many were known; None
    under `min_rows` known labels or with a single class (AUC undefined)."""
    from sklearn.metrics import roc_auc_score

    labels = rows[LABEL].to_numpy(dtype=np.float64)
    known = ~np.isnan(labels)
    n = int(known.sum())
    if n < min_rows or len(np.unique(labels[known])) < 2:
        return None, n
    return float(roc_auc_score(labels[known], rows[PREDICTION].to_numpy()[known])), n


def target_drift(
    reference: pd.DataFrame, current: pd.DataFrame, min_rows: int, z_limit: float
) -> TargetDrift:
    """The label's base rate on the current rows whose label has matured (the rows
    matured_auc reads) against its rate on the reference rows with a known label; drifted
    when a two-proportion z-test gives |z| > `z_limit`. All None under `min_rows` known
    labels on either side: a rate of a few rows is noise."""
    matured, known = _known_labels(current), _known_labels(reference)
    if min(len(matured), len(known)) < min_rows:
        return TargetDrift()
    z = two_proportion_z(int(matured.sum()), len(matured), int(known.sum()), len(known))
    return TargetDrift(float(matured.mean()), float(known.mean()), z, abs(z) > z_limit)


def _known_labels(rows: pd.DataFrame) -> np.ndarray:
    labels = rows[LABEL].to_numpy(dtype=np.float64)
    return labels[~np.isnan(labels)]


def two_proportion_z(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    """z of rate a minus rate b under the pooled null of one common rate; 0 when the pooled
    rate is 0 or 1 (both samples all one class: no difference to measure)."""
    if min(n_a, n_b) < 1:
        raise ValueError(f"two-proportion z-test needs both samples non-empty, got {n_a}, {n_b}")
    pooled = (hits_a + hits_b) / (n_a + n_b)
    error = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    return 0.0 if error == 0 else (hits_a / n_a - hits_b / n_b) / error


def reference_auc(
    metrics: Mapping[str, float], reference: pd.DataFrame, min_rows: int
) -> tuple[float | None, str]:
    """The out-of-sample AUC the training run logged; without one, the AUC on the reference
    rows, which the model was fit on (in sample: an upper bound, said so in the source)."""
    for key in REFERENCE_AUC_METRICS:
        value = metrics.get(key)
        if value is not None and np.isfinite(value):
            return float(value), f"training run metric {key}"
    auc, _ = matured_auc(reference, min_rows)
    return auc, "reference rows (in sample)"


def retrain_decision(
    check: DriftCheck, last_triggered: datetime | None, now: datetime, cfg: DriftConfig
) -> tuple[bool, str]:
    """Retrain when the data drifted and no check triggered retraining within the debounce."""
    share = f"{check.share_drifted:.0%} of {len(DRIFT_FEATURES)} features drifted"
    if not check.dataset_drift:
        return False, f"no drift: {share} (< {cfg.threshold:.0%})"
    if last_triggered is not None and now - last_triggered < cfg.debounce:
        return False, (
            f"drift ({share}), but retraining was triggered at {last_triggered:%F %H:%M} UTC, "
            f"within the {cfg.debounce} debounce"
        )
    return True, f"drift: {share} (>= {cfg.threshold:.0%}): retrain"


def record_check(store: DriftCheckStore, report: DriftReport) -> DriftCheck:
    """Keep the check before any retraining is triggered, as triggered when it asks for one:
    a drift run started while the retraining is scheduled or running then sees it through
    `last_triggered` and holds off. The run goes on with `attach_flow_run`. Returns the check
    with the id the store gave it."""
    check = replace(report.check, retrain_triggered=report.retrain, flow_run_id=None)
    return replace(check, id=store.save(check))


def attach_flow_run(store: DriftCheckStore, check: DriftCheck, flow_run_id: str) -> DriftCheck:
    """The retraining run the stored `check` started, written onto its row; returns it."""
    if check.id is None:
        raise ValueError(f"drift check of {check.checked_at} was never stored: no id")
    if not check.retrain_triggered:
        raise ValueError(f"retraining run {flow_run_id} for check {check.id}, which asked for none")
    store.set_flow_run(check.id, flow_run_id)
    return replace(check, flow_run_id=flow_run_id)


def attach_report(registry: ModelRegistry, check: DriftCheck) -> str | None:
    """The HTML report beside the checked version's training run in the registry, and the
    check's headline as a version tag; returns the run id (None: no report was written)."""
    if check.report_path is None:
        return None
    summary = (
        f"{check.checked_at:%F %H:%M} UTC: {check.share_drifted:.0%} of features drifted, "
        f"prediction drift {'yes' if check.prediction_drift else 'no'}, "
        f"AUC now {_num(check.auc_current)} vs {_num(check.auc_reference)}, "
        f"label rate now {_num(check.target_rate_current)} vs "
        f"{_num(check.target_rate_reference)} (target drift {_flag(check.target_drift)})"
    )
    return registry.attach(
        check.model_name,
        check.model_version,
        REPORT_FOLDER,
        [Path(check.report_path)],
        {"drift_last": summary},
    )


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _flag(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "no")
