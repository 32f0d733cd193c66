"""Drift checks in the SQL ledger (SQLite and PostgreSQL): a check reads back as stored, the
newest first (its target figures too: a target that did not drift stays False, not None), and
the debounce finds the newest check that triggered retraining; a check stored before its
retraining run existed gets the run's id written on afterwards."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import StatementError

from core.records import DriftCheck
from infra.ledger.drift import UnknownDriftCheck
from infra.ledger.ledger import Ledger

T0 = datetime(2024, 6, 1, 0, 20, tzinfo=UTC)


@pytest.fixture
def check() -> DriftCheck:
    return DriftCheck(
        checked_at=T0,
        model_name="tradeflow-direction",
        model_version="3",
        reference_start=datetime(2020, 12, 1, tzinfo=UTC),
        reference_end=datetime(2021, 7, 17, 20, tzinfo=UTC),
        current_start=datetime(2024, 5, 11, 4, tzinfo=UTC),
        current_end=datetime(2024, 5, 31, 23, tzinfo=UTC),
        reference_rows=5000,
        current_rows=1000,
        share_drifted=0.6341463414634146,
        dataset_drift=True,
        prediction_drift=False,
        prediction_score=0.0731,
        drifted_columns=("atr_pct_14", "rv_24", "vol_z_72"),
        matured_rows=992,
        auc_current=0.5123,
        auc_reference=None,
        retrain_triggered=True,
        flow_run_id="0b7e6f7a-9a4e-4c55-8f43-0d1d1f0b4a11",
        report_path="/var/reports/drift/drift-tradeflow-direction-v3-20240601T002000Z.html",
        target_rate_current=0.4012096774193548,
        target_rate_reference=0.4560417503010839,
        target_drift=True,
    )


def test_save_when_a_check_is_stored_then_latest_reads_it_back_field_for_field(
    ledger: Ledger, check: DriftCheck
) -> None:
    stored_id = ledger.drift.save(check)
    got = ledger.drift.latest("tradeflow-direction")
    assert got is not None
    assert got == replace(check, id=stored_id)
    assert got.checked_at.tzinfo is not None
    assert isinstance(got.drifted_columns, tuple)


def test_save_when_optional_figures_are_missing_then_they_read_back_as_none(
    ledger: Ledger, check: DriftCheck
) -> None:
    quiet = replace(
        check,
        prediction_score=None,
        auc_current=None,
        auc_reference=None,
        drifted_columns=(),
        retrain_triggered=False,
        flow_run_id=None,
        report_path=None,
        target_rate_current=None,
        target_rate_reference=None,
        target_drift=None,
    )
    stored_id = ledger.drift.save(quiet)
    assert ledger.drift.latest() == replace(quiet, id=stored_id)


def test_save_when_the_target_did_not_drift_then_false_reads_back_false_not_none(
    ledger: Ledger, check: DriftCheck
) -> None:
    steady = replace(check, target_rate_current=0.4012, target_rate_reference=0.4178,
                     target_drift=False)  # fmt: skip
    ledger.drift.save(steady)
    got = ledger.drift.latest()
    assert got is not None
    assert got.target_drift is False
    assert (got.target_rate_current, got.target_rate_reference) == (0.4012, 0.4178)


def test_save_when_the_check_carries_an_id_then_stored_anew_under_the_ledgers_id(
    ledger: Ledger, check: DriftCheck
) -> None:
    first = ledger.drift.save(check)
    read_back = ledger.drift.latest()
    assert read_back is not None
    later = replace(read_back, checked_at=T0 + timedelta(hours=1))  # id=first rides along
    second = ledger.drift.save(later)
    assert second != first
    assert [c.id for c in ledger.drift.recent()] == [second, first]


def test_latest_when_several_models_and_times_then_newest_of_that_model(
    ledger: Ledger, check: DriftCheck
) -> None:
    ledger.drift.save(check)
    ledger.drift.save(replace(check, checked_at=T0 + timedelta(hours=2), model_version="4"))
    ledger.drift.save(replace(check, checked_at=T0 + timedelta(hours=5), model_name="other"))
    mine = ledger.drift.latest("tradeflow-direction")
    assert mine is not None
    assert (mine.model_version, mine.checked_at) == ("4", T0 + timedelta(hours=2))
    anyone = ledger.drift.latest()
    assert anyone is not None
    assert anyone.model_name == "other"
    assert [c.model_version for c in ledger.drift.recent("tradeflow-direction")] == ["4", "3"]


def test_latest_when_nothing_stored_then_none(ledger: Ledger) -> None:
    assert ledger.drift.latest() is None
    assert ledger.drift.last_triggered("tradeflow-direction") is None


def test_last_triggered_when_later_checks_did_not_trigger_then_the_triggering_ones_time(
    ledger: Ledger, check: DriftCheck
) -> None:
    ledger.drift.save(check)  # triggered at T0
    later = replace(check, retrain_triggered=False, flow_run_id=None)
    ledger.drift.save(replace(later, checked_at=T0 + timedelta(hours=1)))
    ledger.drift.save(replace(later, checked_at=T0 + timedelta(hours=2), model_version="4"))
    ledger.drift.save(replace(check, checked_at=T0 + timedelta(hours=3), model_name="other"))
    assert ledger.drift.last_triggered("tradeflow-direction") == T0
    assert ledger.drift.last_triggered("other") == T0 + timedelta(hours=3)
    assert ledger.drift.last_triggered("unknown") is None


def test_save_when_time_is_naive_then_refused_and_nothing_stored(
    ledger: Ledger, check: DriftCheck
) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        ledger.drift.save(replace(check, checked_at=T0.replace(tzinfo=None)))
    assert ledger.drift.latest() is None


def test_set_flow_run_when_check_stored_without_run_then_reads_back_with_it(
    ledger: Ledger, check: DriftCheck
) -> None:
    pending = replace(check, flow_run_id=None)
    stored_id = ledger.drift.save(pending)
    other_id = ledger.drift.save(replace(pending, checked_at=T0 + timedelta(hours=1)))
    assert ledger.drift.last_triggered("tradeflow-direction") == T0 + timedelta(hours=1)
    ledger.drift.set_flow_run(stored_id, "run-a")
    ledger.drift.set_flow_run(stored_id, "run-a")  # a retried write: the same row, no error
    assert ledger.drift.recent() == [
        replace(pending, id=other_id, checked_at=T0 + timedelta(hours=1)),
        replace(pending, id=stored_id, flow_run_id="run-a"),
    ]


def test_set_flow_run_when_no_check_has_the_id_then_refused(
    ledger: Ledger, check: DriftCheck
) -> None:
    stored_id = ledger.drift.save(replace(check, flow_run_id=None))
    with pytest.raises(UnknownDriftCheck, match=f"id {stored_id + 1} to set run run-a"):
        ledger.drift.set_flow_run(stored_id + 1, "run-a")
    got = ledger.drift.latest()
    assert got is not None
    assert got.flow_run_id is None
