"""Drift watch: check the champion against the newest candles; on drift, retrain (at most once
per debounce) through the train deployment, or in this process when there is none."""

from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from core.errors import FatalError
from core.records import DriftCheck
from tasks.drift import attach_drift_report, check_drift_now, publish_drift, record_drift_check

TRAIN_DEPLOYMENT = "train/train-daily"  # prefect.yaml: flow `train`, deployment `train-daily`


class RetrainFailed(FatalError):
    pass


@flow(name="drift")
def drift(now: datetime | None = None, retrain_deployment: str = TRAIN_DEPLOYMENT) -> DriftCheck:
    """Compare the champion's training window with the newest candles (as of `now`, default
    the clock); keep the check, its HTML report beside the version in MLflow and as this run's
    artifact; on drift with no retraining within the debounce, run `retrain_deployment`
    ("flow/deployment"), or the train flow in this process when the server has no such
    deployment."""
    report = check_drift_now(now)
    flow_run_id, retraining, failed = None, "not needed", False
    if report.retrain:
        flow_run_id, retraining, failed = _retrain(report.check, retrain_deployment)
    check = record_drift_check(report, flow_run_id)  # before anything else can fail
    attach_drift_report(check)
    publish_drift(report, check, retraining)
    if failed:  # recorded as triggered: the debounce holds off a retry storm of failing runs
        raise RetrainFailed(f"retraining run {flow_run_id} failed: {retraining}")
    return check


def _retrain(check: DriftCheck, deployment: str) -> tuple[str, str, bool]:
    """(flow run id, what was done, whether it failed already). The idempotency key: one
    check (model, version, time) never schedules two training runs."""
    key = f"drift-{check.model_name}-v{check.model_version}-{check.checked_at:%Y%m%dT%H%M%S}"
    try:
        run = run_deployment(name=deployment, timeout=0, idempotency_key=key)
    except ObjectNotFound:  # the ephemeral default server knows no deployments
        return _train_here(deployment)
    return str(run.id), f"deployment {deployment}: run {run.name} ({run.id}) scheduled", False


def _train_here(deployment: str) -> tuple[str, str, bool]:
    from flows.train import train  # training's imports are heavy: only a fallback pays them

    get_run_logger().warning(
        "no %s deployment on this Prefect server: running the train flow in this process",
        deployment,
    )
    state = train(return_state=True)
    run_id = str(state.state_details.flow_run_id)
    done = f"no {deployment} deployment: train flow run {run_id} in this process"
    return run_id, f"{done}: {state.name}", bool(state.is_failed())
