from __future__ import annotations

from datetime import datetime

from prefect import flow

from infra.jobs.training import TrainingReport
from tasks.train import train_model


@flow(name="train", log_prints=True)
def train(until: datetime | None = None) -> TrainingReport:
    """Train the ensemble on stored candles (up to `until`), register it, maybe promote it."""
    return train_model(until)
