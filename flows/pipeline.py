from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from prefect import flow

from flows.decide import decide
from flows.ingest import ingest
from flows.train import train
from infra.jobs.decisions import DecisionRunReport
from infra.jobs.ingest import IngestReport
from infra.jobs.training import TrainingReport
from infra.settings import get_settings
from tasks.decide import replay_cutoff


@dataclass(frozen=True, slots=True)
class PipelineReport:
    ingest: list[IngestReport]
    training: TrainingReport
    decisions: DecisionRunReport
    replay_from: datetime


@flow(name="pipeline", log_prints=True)
def pipeline(
    replay_candles: int | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_candle: Callable[[datetime], None] | None = None,
) -> PipelineReport:
    """Ingest -> train on everything before the replay window -> replay the window."""
    settings = get_settings()
    n = replay_candles or settings.replay_candles
    _stage(on_stage, "ingest")
    reports = ingest()
    _stage(on_stage, "train")
    first_replayed, train_until = replay_cutoff(n)
    training = train(until=train_until)
    _stage(on_stage, "decide")
    decisions = decide(candles=n, replay=True, on_candle=on_candle)
    _stage(on_stage, "done")
    return PipelineReport(reports, training, decisions, first_replayed)


def _stage(callback: Callable[[str], None] | None, name: str) -> None:
    if callback is not None:
        callback(name)
