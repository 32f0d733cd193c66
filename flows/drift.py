"""Drift watch: check the champion against the newest candles; on drift, retrain (at most once
per debounce) through the train deployment, or in this process when asked to (no deployment)."""

from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from core.errors import FatalError
from core.records import DriftCheck
from flows.run_logs import set_up_logs
from tasks.drift import (
    attach_drift_report,
    check_drift_now,
    publish_drift,
    record_drift_check,
    set_drift_flow_run,
)

TRAIN_DEPLOYMENT = "train/train-daily"  # prefect.yaml: flow `train`, deployment `train-daily`


class RetrainFailed(FatalError):
    pass


class UnknownDeployment(FatalError):
    """The Prefect server has no deployment of the name drift was told to retrain with."""


@flow(name="drift")
def drift(
    now: datetime | None = None, retrain_deployment: str | None = TRAIN_DEPLOYMENT
) -> DriftCheck:
    """Compare the champion's training window with the newest candles (as of `now`, default
    the clock); keep the check, its HTML report beside the version in MLflow and as this run's
    artifact; on drift with no retraining within the debounce, run `retrain_deployment`
    ("flow/deployment"), or, when it is None, the train flow in this process. A name the
    server does not know fails the run (UnknownDeployment) rather than training here."""
    set_up_logs()
    report = check_drift_now(now)
    # Stored first, as triggered: a drift run started while this one retrains sees it and
    # holds off, and a failure after scheduling cannot leave the trigger unrecorded.
    check = record_drift_check(report)
    retraining, failure = "not needed", None
    if report.retrain:
        check, retraining, failure = _retrain(check, retrain_deployment)
    attach_drift_report(check)
    publish_drift(report, check, retraining)
    if failure is not None:  # recorded as triggered: the debounce holds off a retry storm
        raise failure
    return check


def _retrain(
    check: DriftCheck, deployment: str | None
) -> tuple[DriftCheck, str, FatalError | None]:
    """(the check with its run, what was done, the error to fail the run with). The idempotency
    key: one check (model, version, time) never schedules two training runs."""
    if deployment is None:
        return _train_here(check)
    key = f"drift-{check.model_name}-v{check.model_version}-{check.checked_at:%Y%m%dT%H%M%S}"
    try:
        run = run_deployment(name=deployment, timeout=0, idempotency_key=key)
    except ObjectNotFound:
        done = f"deployment {deployment} not found on this Prefect server: nothing scheduled"
        return (
            check,
            done,
            UnknownDeployment(
                f"no deployment {deployment!r} on this Prefect server (a misspelt name, or not "
                "deployed); the check is recorded as triggered, so no retraining until the "
                "debounce ends; pass retrain_deployment=None to train in this process"
            ),
        )
    check = set_drift_flow_run(check, str(run.id))
    return check, f"deployment {deployment}: run {run.name} ({run.id}) scheduled", None


def _train_here(check: DriftCheck) -> tuple[DriftCheck, str, FatalError | None]:
    from flows.train import train  # training's imports are heavy: only this path pays them

    get_run_logger().info("retrain_deployment=None: running the train flow in this process")
    state = train(return_state=True)
    run_id = str(state.state_details.flow_run_id)
    check = set_drift_flow_run(check, run_id)
    done = f"train flow run {run_id} in this process (retrain_deployment=None): {state.name}"
    if state.is_failed():
        return check, done, RetrainFailed(f"retraining run {run_id} failed: {done}")
    return check, done, None
