from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from services import bootstrap
from services.training import TrainingReport, train_and_register


@task(name="train-and-register", cache_policy=NO_CACHE)
def train_model(until: datetime | None = None) -> TrainingReport:
    settings = bootstrap.get_settings()
    return train_and_register(
        bootstrap.ledger(settings),
        bootstrap.model_registry(settings),
        bootstrap.training_config(settings),
        until=until,
    )
