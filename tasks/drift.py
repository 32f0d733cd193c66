"""Drift tasks: check the champion against the newest candles, keep the check in the ledger,
put its HTML report beside the version in MLflow, and tell a Prefect operator what was found."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from core.clock import SystemClock
from core.records import DriftCheck
from services import bootstrap
from services.drift import (
    DRIFT_FEATURES,
    DriftReport,
    attach_flow_run,
    attach_report,
    check_drift,
    record_check,
)
from tasks.retry import IO_RETRIES, only_retryable

TOP_COLUMNS = 10  # drifted columns listed in the artifact, highest score first


@task(name="check-drift", **IO_RETRIES)
def check_drift_now(now: datetime | None = None) -> DriftReport:
    settings = bootstrap.get_settings()
    return check_drift(
        bootstrap.ledger(settings),
        bootstrap.champion(settings),
        bootstrap.model_registry(settings),
        bootstrap.drift_config(settings),
        now or SystemClock().now(),
    )


@task(name="record-drift-check", **IO_RETRIES)
def record_drift_check(report: DriftReport) -> DriftCheck:
    """Kept before retraining is triggered, as triggered when it asks for one."""
    settings = bootstrap.get_settings()
    return record_check(bootstrap.ledger(settings).drift, report)


@task(name="set-drift-flow-run", **IO_RETRIES)  # idempotent: a retry writes the same id
def set_drift_flow_run(check: DriftCheck, flow_run_id: str) -> DriftCheck:
    settings = bootstrap.get_settings()
    return attach_flow_run(bootstrap.ledger(settings).drift, check, flow_run_id)


@task(name="attach-drift-report", retries=2, retry_delay_seconds=2,
      retry_condition_fn=only_retryable, cache_policy=NO_CACHE)  # fmt: skip
def attach_drift_report(check: DriftCheck) -> str | None:
    """The HTML report beside the checked version in MLflow; returns the MLflow run id."""
    return attach_report(bootstrap.model_registry(bootstrap.get_settings()), check)


def publish_drift(report: DriftReport, check: DriftCheck, retraining: str) -> None:
    """The check's numbers in the run's log and as a markdown artifact."""
    get_run_logger().info(
        "%s v%s: %s; retraining: %s; report %s",
        check.model_name, check.model_version, report.reason, retraining, check.report_path,
    )  # fmt: skip
    top = sorted((c for c in report.columns if c.drifted), key=lambda c: -c.score)[:TOP_COLUMNS]
    columns = [(c.column, f"{c.score:.3f}", c.method) for c in top]
    body = "\n\n".join(
        [
            f"## Drift check of {check.model_name} v{check.model_version}",
            _table(("what", "value"), _figures(report, check, retraining)),
            f"### Most drifted columns (of {len(check.drifted_columns)})",
            _table(("column", "score", "method"), columns),
        ]
    )
    create_markdown_artifact(body, key="drift", description=report.reason)


def _figures(report: DriftReport, check: DriftCheck, retraining: str) -> list[tuple[str, str]]:
    drifted = f"{check.share_drifted:.1%} of {len(DRIFT_FEATURES)} ({len(check.drifted_columns)})"
    return [
        ("reference", f"{_span(check.reference_start, check.reference_end)}, "
         f"{check.reference_rows} rows ({report.reference_source} tag)"),
        ("current", f"{_span(check.current_start, check.current_end)}, {check.current_rows} rows"),
        ("features drifted", f"{drifted}; dataset drift {_yes(check.dataset_drift)}"),
        ("prediction drift", f"{_yes(check.prediction_drift)}, "
         f"score {_num(check.prediction_score)}"),
        ("AUC now", f"{_num(check.auc_current)} on {check.matured_rows} matured labels"),
        ("AUC reference", f"{_num(check.auc_reference)} ({report.auc_reference_source})"),
        ("label rate", _rates(check)),
        ("target drift", _target(report, check)),
        ("decision", report.reason),
        ("retraining", retraining),
        ("HTML report", f"`{check.report_path}`" if check.report_path else "not written"),
    ]  # fmt: skip


def _rates(check: DriftCheck) -> str:
    if check.target_rate_current is None or check.target_rate_reference is None:
        return f"n/a: {check.matured_rows} matured labels, too few to compare"
    return (
        f"{check.target_rate_current:.1%} now on {check.matured_rows} matured labels vs "
        f"{check.target_rate_reference:.1%} on the reference rows"
    )


def _target(report: DriftReport, check: DriftCheck) -> str:
    """Whether the label's base rate moved; said, but it does not retrain on its own."""
    if check.target_drift is None:
        return "n/a"
    z = f"two-proportion z {report.target_z:+.2f}" if report.target_z is not None else "no z"
    if not check.target_drift:
        return f"no ({z})"
    return (
        f"**yes** ({z}): the label's base rate moved beyond sampling noise; "
        "it does not trigger retraining by itself (the feature share decides)"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _span(start: datetime, end: datetime) -> str:
    return f"{start:%F %H:%M} .. {end:%F %H:%M} UTC"


def _yes(flag: bool) -> str:
    return "**yes**" if flag else "no"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
