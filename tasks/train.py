from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from infra import composition
from infra.jobs.training import TrainingReport, train_and_register
from infra.settings import get_settings


@task(name="train-and-register", cache_policy=NO_CACHE)
def train_model(until: datetime | None = None) -> TrainingReport:
    settings = get_settings()
    composition.mlflow_store(settings)
    return train_and_register(
        composition.ledger(settings), composition.training_config(settings), until=until
    )
