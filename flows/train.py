from __future__ import annotations

from datetime import datetime

from prefect import flow

from flows.run_logs import set_up_logs
from services.training import TrainingReport
from tasks.reporting import publish_training
from tasks.train import train_model


@flow(name="train")
def train(until: datetime | None = None) -> TrainingReport:
    """Train the ensemble on stored candles (up to `until`), register it, maybe promote it."""
    set_up_logs()
    report = train_model(until)
    publish_training(report)
    return report
