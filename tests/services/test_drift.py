"""The drift check on real Binance candles: the 2021 bull market against May 2024 drifts, and
drifts more than January-April 2024 against May 2024; the windows read only what had closed
by `now`; two drifted checks within the debounce ask for one retraining; the label's base rate
fell from 2021 to May 2024 beyond sampling noise, and not from early 2024. Synthetic inputs
only for the edge cases (tags, AUC, the target test, the decision)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from infra.ledger.ledger import open_ledger
from infra.ledger.memory import MemoryCandles
from infra.market_data.files import read_candle_file
from services.drift import (
    DRIFT_FEATURES,
    LABEL,
    PREDICTION,
    DriftCheck,
    DriftCheckStore,
    DriftConfig,
    DriftConfigError,
    DriftReport,
    NoReferenceWindow,
    NotEnoughRows,
    TargetDrift,
    Window,
    attach_flow_run,
    check_drift,
    matured_auc,
    record_check,
    reference_window,
    retrain_decision,
    target_drift,
    two_proportion_z,
)

NOW = datetime(2024, 6, 1, tzinfo=UTC)  # current window: the last candles of May 2024
HORIZON = 4
RANGE_2021 = "2020-12-01 00:00:00+00:00 .. 2021-07-17 20:00:00+00:00"
RANGE_2024 = "2024-01-01 00:00:00+00:00 .. 2024-04-30 23:00:00+00:00"
PAIRS = ("BTC/USDT", "ETH/USDT")


@dataclass(frozen=True)
class LogisticOfRsi:
    """A stand-in champion: P(up) as a logistic of RSI(14)."""

    name: str = "stub-direction"
    version: str = "7"
    feature_set_version: str = "stub"

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return 1 / (1 + np.exp(-10 * (features["rsi_14"].to_numpy() - 0.5)))


@dataclass(frozen=True)
class Champion:
    model: LogisticOfRsi = field(default_factory=LogisticOfRsi)

    def get(self) -> LogisticOfRsi:
        return self.model


@dataclass(frozen=True)
class Records:
    tags: Mapping[str, str]
    metrics: Mapping[str, float] = field(default_factory=dict)

    def version_tags(self, name: str, version: str) -> Mapping[str, str]:
        return self.tags

    def run_metrics(self, name: str, version: str) -> Mapping[str, float]:
        return self.metrics


@dataclass
class ListStore:
    """Drift checks in a list, oldest first: core's DriftCheckStore, for checks that keep
    nothing. Ids count from 1."""

    saved: list[DriftCheck] = field(default_factory=list)

    def save(self, check: DriftCheck) -> int:
        self.saved.append(replace(check, id=len(self.saved) + 1))
        return len(self.saved)

    def set_flow_run(self, check_id: int, flow_run_id: str) -> None:
        self.saved[check_id - 1] = replace(self.saved[check_id - 1], flow_run_id=flow_run_id)

    def latest(self, model_name: str | None = None) -> DriftCheck | None:
        return next(iter(self.recent(model_name, limit=1)), None)

    def recent(self, model_name: str | None = None, limit: int = 20) -> list[DriftCheck]:
        mine = [c for c in self.saved if model_name in (None, c.model_name)]
        return sorted(mine, key=lambda c: c.checked_at, reverse=True)[:limit]

    def last_triggered(self, model_name: str) -> datetime | None:
        times = [c.checked_at for c in self.saved if c.retrain_triggered]
        return max(times, default=None)


@dataclass
class DriftLedger:
    """The part of core's Ledger that check_drift reads."""

    candles: MemoryCandles
    drift: DriftCheckStore


@pytest.fixture(scope="module")
def candles(shared_data: Path) -> MemoryCandles:
    """BTC and ETH 1h candles of Dec 2020-Jul 2021 and of 2024 in one store, as a ledger that
    has been ingesting for years would hold them."""
    store = MemoryCandles()
    for folder, ext in (
        ("nfi-binance-spot-2021", "json"),
        ("genetrader-binance-spot-2024", "feather"),
    ):
        for pair in PAIRS:
            path = shared_data / "ohlcv" / folder / f"{pair.replace('/', '_')}-1h.{ext}"
            store.upsert("binance", pair, "1h", read_candle_file(path))
    return store


@pytest.fixture(scope="module")
def evidently() -> None:
    pytest.importorskip("evidently", reason="evidently==0.7.23 is not installed (see pyproject)")


def config(**changes: object) -> DriftConfig:
    base = DriftConfig("binance", PAIRS, "1h", "BTC/USDT", label_horizon=HORIZON)
    return replace(base, **changes)  # type: ignore[arg-type]


def run_check(
    candles: MemoryCandles, records: Records, cfg: DriftConfig, now: datetime = NOW
) -> DriftReport:
    return check_drift(DriftLedger(candles, ListStore()), Champion(), records, cfg, now)


@pytest.fixture(scope="module")
def cross_regime(
    candles: MemoryCandles, evidently: None, tmp_path_factory: pytest.TempPathFactory
) -> DriftReport:
    records = Records({"data_range": RANGE_2021}, {"ensemble_oof_auc": 0.5512})
    folder = tmp_path_factory.mktemp("drift-reports")
    return run_check(candles, records, config(report_dir=folder))


@pytest.fixture(scope="module")
def same_regime(candles: MemoryCandles, evidently: None) -> DriftReport:
    return run_check(candles, Records({"data_range": RANGE_2024}), config())


def test_check_when_2021_reference_against_may_2024_then_drift_detected(
    cross_regime: DriftReport,
) -> None:
    check = cross_regime.check
    assert check.dataset_drift
    assert check.share_drifted >= 0.5
    assert len(check.drifted_columns) == round(check.share_drifted * len(DRIFT_FEATURES))
    assert set(check.drifted_columns) <= set(DRIFT_FEATURES)
    assert cross_regime.retrain  # nothing triggered before
    assert "drift" in cross_regime.reason
    assert check.prediction_score is not None


def test_check_when_same_regime_nearby_then_fewer_features_drift_than_across_regimes(
    cross_regime: DriftReport, same_regime: DriftReport
) -> None:
    assert same_regime.check.share_drifted < cross_regime.check.share_drifted


def test_check_when_reference_from_data_range_then_newest_rows_of_that_window_only(
    cross_regime: DriftReport,
) -> None:
    check = cross_regime.check
    window = reference_window({"data_range": RANGE_2021})[0]
    assert check.reference_rows == 5000  # two symbols x ~5,480 candles: capped
    assert window.start <= check.reference_start < check.reference_end <= window.end
    assert check.reference_end == window.end  # the newest rows of the window are kept
    assert cross_regime.reference_source == "data_range"


def test_check_when_now_given_then_current_window_ends_at_the_last_closed_candle(
    cross_regime: DriftReport,
) -> None:
    check = cross_regime.check
    assert check.current_end == NOW - timedelta(hours=1)
    assert check.current_start == NOW - timedelta(hours=500)
    assert check.current_rows == 500 * len(PAIRS)
    assert check.checked_at == NOW


def test_check_when_labels_of_the_last_candles_are_unknown_then_auc_on_matured_rows_only(
    cross_regime: DriftReport,
) -> None:
    check = cross_regime.check
    assert check.matured_rows == (500 - HORIZON) * len(PAIRS)
    assert check.auc_current is not None
    assert 0 < check.auc_current < 1
    assert check.auc_reference == 0.5512  # the training run's out-of-fold AUC
    assert cross_regime.auc_reference_source == "training run metric ensemble_oof_auc"


def test_check_when_the_run_logged_no_out_of_sample_auc_then_in_sample_on_reference(
    same_regime: DriftReport,
) -> None:
    assert same_regime.check.auc_reference is not None
    assert same_regime.auc_reference_source == "reference rows (in sample)"


def test_check_when_report_dir_given_then_html_written_there(
    cross_regime: DriftReport, same_regime: DriftReport
) -> None:
    path = Path(str(cross_regime.check.report_path))
    assert path.name == "drift-stub-direction-v7-20240601T000000Z.html"
    assert path.stat().st_size > 100_000
    html = path.read_text()
    assert "drawDashboard" in html  # evidently's dashboard, drawn offline from inline data
    assert all(f'"{c}"' in html for c in cross_regime.check.drifted_columns)
    assert same_regime.check.report_path is None


def test_check_when_two_drifted_checks_within_debounce_then_one_retraining(
    candles: MemoryCandles, evidently: None, tmp_path: Path
) -> None:
    led = DriftLedger(candles, open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}").drift)
    records, cfg = Records({"data_range": RANGE_2021}), config(reference_rows=2000)
    first = check_drift(led, Champion(), records, cfg, NOW)
    assert first.retrain
    kept = attach_flow_run(led.drift, record_check(led.drift, first), "flow-run-1")
    second = check_drift(led, Champion(), records, cfg, NOW + timedelta(hours=3))
    assert second.check.dataset_drift
    assert not second.retrain
    assert "debounce" in second.reason
    record_check(led.drift, second)
    assert led.drift.last_triggered("stub-direction") == NOW
    assert led.drift.recent("stub-direction")[1] == kept
    assert kept.id is not None
    assert kept.flow_run_id == "flow-run-1"


def test_check_when_labels_matured_then_base_rate_fell_from_2021_beyond_sampling_noise(
    cross_regime: DriftReport,
) -> None:
    check = cross_regime.check
    assert check.target_rate_current is not None
    assert check.target_rate_reference is not None
    assert 0 < check.target_rate_current < check.target_rate_reference < 1
    assert cross_regime.target_z is not None
    assert cross_regime.target_z < -3  # May 2024 beat the fee less often than 2021 did
    assert check.target_drift is True


def test_check_when_same_regime_nearby_then_base_rate_within_sampling_noise(
    same_regime: DriftReport, cross_regime: DriftReport
) -> None:
    check = same_regime.check
    assert check.target_rate_current == cross_regime.check.target_rate_current  # same rows
    assert check.target_rate_reference is not None
    assert 0 < check.target_rate_reference < 1
    assert same_regime.target_z is not None
    assert abs(same_regime.target_z) < abs(cross_regime.target_z or 0)
    assert check.target_drift is False


def test_check_when_labels_matured_then_label_compared_by_evidently_as_a_category(
    cross_regime: DriftReport,
) -> None:
    by_name = {c.column: c for c in cross_regime.columns}
    assert by_name[LABEL].method == "jensenshannon"
    assert 0 < by_name[LABEL].score < 1
    assert LABEL not in cross_regime.check.drifted_columns  # features only
    assert by_name[PREDICTION].method == "wasserstein"
    html = Path(str(cross_regime.check.report_path)).read_text()
    assert f'"{LABEL}"' in html


def test_check_when_fewer_matured_labels_than_min_rows_then_no_target_figures(
    candles: MemoryCandles, evidently: None
) -> None:
    # 1,000 current rows, of which 992 have matured: 995 asks for more.
    report = run_check(
        candles, Records({"data_range": RANGE_2021}), config(min_rows=995, reference_rows=2000)
    )
    check = report.check
    assert check.matured_rows == 992
    assert (check.target_rate_current, check.target_rate_reference, check.target_drift) == (
        None,
        None,
        None,
    )
    assert report.target_z is None
    assert check.auc_current is None  # the same rows, the same minimum
    assert LABEL not in {c.column for c in report.columns}
    assert PREDICTION in {c.column for c in report.columns}


def test_check_when_reference_window_holds_too_few_rows_then_refused(
    candles: MemoryCandles,
) -> None:
    ten_hours = Records({"data_range": "2021-03-01 00:00:00+00:00 .. 2021-03-01 09:00:00+00:00"})
    with pytest.raises(NotEnoughRows, match="20 complete feature rows in the reference"):
        run_check(candles, ten_hours, config())


def test_check_when_no_candle_had_closed_by_now_then_refused(candles: MemoryCandles) -> None:
    with pytest.raises(NotEnoughRows, match="run the ingest flow first"):
        run_check(
            candles, Records({"data_range": RANGE_2021}), config(), datetime(2020, 1, 1, tzinfo=UTC)
        )


# -- edge cases, synthetic ----------------------------------------------------------------------


def a_check(**changes: object) -> DriftCheck:
    at = datetime(2024, 1, 1, tzinfo=UTC)
    base = DriftCheck(at, "m", "1", at, at, at, at, 1, 1, 0.6, True, False, None, ("rv_24",),
                      0, None, None)  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


def test_reference_window_when_run_has_range_train_then_it_wins_over_data_range() -> None:
    window, source = reference_window(
        {"data_range": RANGE_2024, "range_train": "2024-01-01 00:00:00+00:00 .. 2024-03-01"}
    )
    assert source == "range_train"
    assert window == Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))


@pytest.mark.parametrize("tags", [{}, {"data_range": "test"}, {"data_range": "2024-02 .. x"}])
def test_reference_window_when_tag_missing_or_unreadable_then_refused(
    tags: dict[str, str],
) -> None:
    with pytest.raises(NoReferenceWindow):
        reference_window(tags)


def test_retrain_decision_when_last_trigger_older_than_debounce_then_retrain() -> None:
    cfg, now = config(), datetime(2024, 6, 2, tzinfo=UTC)
    assert retrain_decision(a_check(), now - timedelta(hours=25), now, cfg)[0]
    assert retrain_decision(a_check(), None, now, cfg)[0]
    assert not retrain_decision(a_check(), now - timedelta(hours=23), now, cfg)[0]
    quiet = a_check(share_drifted=0.1, dataset_drift=False)
    assert not retrain_decision(quiet, None, now, cfg)[0]


def test_retrain_decision_when_only_the_target_drifted_then_no_retraining() -> None:
    cfg, now = config(), datetime(2024, 6, 2, tzinfo=UTC)
    quiet = a_check(share_drifted=0.1, dataset_drift=False, target_drift=True)
    retrain, reason = retrain_decision(quiet, None, now, cfg)
    assert not retrain
    assert reason.startswith("no drift")


def test_record_check_when_retrain_asked_then_stored_triggered_before_any_run_exists() -> None:
    """The debounce must see the trigger while the retraining is still being started."""
    store = ListStore()
    kept = record_check(store, DriftReport(a_check(), True, "drift", "data_range", "n/a"))
    assert store.saved == [kept]
    assert (kept.retrain_triggered, kept.flow_run_id) == (True, None)
    assert store.last_triggered("m") == kept.checked_at
    with_run = attach_flow_run(store, kept, "flow-run-1")
    assert store.saved == [with_run]
    assert (with_run.id, with_run.flow_run_id) == (kept.id, "flow-run-1")
    assert attach_flow_run(store, kept, "flow-run-1") == with_run  # a retry changes nothing
    assert store.saved == [with_run]


def test_attach_flow_run_when_check_asked_for_no_retraining_or_unstored_then_refused() -> None:
    store = ListStore()
    quiet = record_check(store, DriftReport(a_check(), False, "no drift", "data_range", "n/a"))
    assert not quiet.retrain_triggered
    with pytest.raises(ValueError, match="asked for none"):
        attach_flow_run(store, quiet, "flow-run-1")
    with pytest.raises(ValueError, match="never stored"):
        attach_flow_run(store, a_check(retrain_triggered=True), "flow-run-1")
    assert store.saved == [quiet]


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ([1.0, 0.0] * 20 + [np.nan] * 20, None),  # 40 matured < 50
        ([1.0] * 60, None),  # one class: AUC undefined
        ([1.0, 0.0] * 30 + [np.nan] * 4, 1.0),  # predictions rank every label right
    ],
)
def test_matured_auc_when_few_or_one_class_then_none(
    labels: list[float], expected: float | None
) -> None:
    rows = pd.DataFrame({LABEL: labels, PREDICTION: [0.9 if v == 1 else 0.1 for v in labels]})
    assert matured_auc(rows, 50)[0] == expected
    assert matured_auc(rows, 50)[1] == int(np.sum(~np.isnan(labels)))


def labelled(rate: float, n: int, unknown: int = 0) -> pd.DataFrame:
    """n known labels of which round(rate * n) are 1 (spread evenly), then `unknown` NaN."""
    ones = np.floor(np.arange(1, n + 1) * rate) - np.floor(np.arange(n) * rate)
    return pd.DataFrame({LABEL: np.concatenate([ones, np.full(unknown, np.nan)])})


def test_labelled_when_built_then_rate_and_unknowns_as_asked() -> None:
    rows = labelled(0.3, 500, unknown=4)
    assert rows[LABEL].isna().sum() == 4
    assert rows[LABEL].dropna().mean() == pytest.approx(0.3)


def test_target_drift_when_label_rate_clearly_changes_then_drift() -> None:
    found = target_drift(labelled(0.5, 1000), labelled(0.3, 500, unknown=8), 50, 3.0)
    assert found.rate_current == pytest.approx(0.3)
    assert found.rate_reference == pytest.approx(0.5)
    assert found.z is not None
    # pooled 650/1500; -0.2 / sqrt(0.4333 * 0.5667 * (1/500 + 1/1000))
    assert found.z == pytest.approx(-7.369, abs=0.001)
    assert found.drifted is True


def test_target_drift_when_label_rate_barely_moves_then_no_drift() -> None:
    found = target_drift(labelled(0.5, 1000), labelled(0.48, 500, unknown=8), 50, 3.0)
    assert found.rate_current == pytest.approx(0.48)
    assert found.z is not None
    assert -3 < found.z < 0
    assert found.drifted is False


@pytest.mark.parametrize(
    ("reference", "current"),
    [
        (labelled(0.5, 1000), labelled(0.1, 49, unknown=20)),  # 49 matured < 50
        (labelled(0.5, 49, unknown=951), labelled(0.1, 500)),  # 49 known in the reference
    ],
)
def test_target_drift_when_fewer_known_labels_than_min_rows_then_none(
    reference: pd.DataFrame, current: pd.DataFrame
) -> None:
    assert target_drift(reference, current, 50, 3.0) == TargetDrift()


def test_two_proportion_z_when_computed_then_square_is_the_uncorrected_chi_square() -> None:
    from scipy.stats import chi2_contingency

    z = two_proportion_z(120, 300, 400, 800)
    chi2 = chi2_contingency([[120, 180], [400, 400]], correction=False)[0]
    assert z < 0  # 40 % against 50 %
    assert z**2 == pytest.approx(chi2)


def test_two_proportion_z_when_both_samples_one_class_then_zero_and_empty_refused() -> None:
    assert two_proportion_z(60, 60, 500, 500) == 0.0
    assert two_proportion_z(0, 60, 0, 500) == 0.0
    with pytest.raises(ValueError, match="non-empty"):
        two_proportion_z(0, 0, 5, 10)


@pytest.mark.parametrize(
    "changes",
    [
        {"reference_symbol": "SOL/USDT"},
        {"target_z": 0.0},
        {"threshold": 0.0},
        {"threshold": 1.5},
        {"window_candles": 0},
        {"debounce": timedelta(hours=-1)},
    ],
)
def test_config_when_values_impossible_then_refused(changes: dict[str, object]) -> None:
    with pytest.raises(DriftConfigError):
        config(**changes)


def test_symbol_rows_when_training_used_a_triple_barrier_then_drift_reads_that_label(
    btc_1h: pd.DataFrame,
) -> None:
    """Matured AUC and target drift judge the label the model learned, not another one."""
    from core.labels import TripleBarrier, triple_barrier_label
    from services.drift import DriftConfig, symbol_rows

    barrier = TripleBarrier(0.01, 0.01)
    cfg = DriftConfig("binance", ("BTC/USDT",), "1h", "BTC/USDT", fee_threshold=0.003)
    candles = {"BTC/USDT": btc_1h.head(1200)}
    fixed = symbol_rows(candles, cfg)["BTC/USDT"]["label"]
    barred = symbol_rows(candles, replace(cfg, barrier=barrier))["BTC/USDT"]["label"]
    expected = triple_barrier_label(candles["BTC/USDT"], timedelta(hours=4), barrier, 0.003)
    np.testing.assert_array_equal(barred.to_numpy(), expected.to_numpy())
    assert not np.array_equal(fixed.dropna().to_numpy(), barred.dropna().to_numpy())
