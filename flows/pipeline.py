from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prefect import flow

from flows.ingest import ingest
from flows.replay import replay
from flows.run_logs import set_up_logs
from flows.train import train
from services import bootstrap, progress
from services.decide.loop import DecisionRunReport
from services.ingest import IngestReport
from services.training import TrainingReport
from tasks.decide import replay_cutoff


@dataclass(frozen=True, slots=True)
class PipelineReport:
    ingest: list[IngestReport]
    training: TrainingReport
    decisions: DecisionRunReport
    replay_from: datetime


@flow(name="pipeline")
def pipeline(replay_candles: int | None = None) -> PipelineReport:
    """Ingest -> train on everything before the replay window -> replay the window (default:
    TRADEFLOW_REPLAY_CANDLES)."""
    set_up_logs()
    n = replay_candles or bootstrap.get_settings().replay_candles
    progress.stage("ingest")
    reports = ingest()
    progress.stage("train")
    first_replayed, train_until = replay_cutoff(n)
    training = train(until=train_until)
    progress.stage("decide")
    decisions = replay(candles=n)
    progress.stage("done")
    return PipelineReport(reports, training, decisions, first_replayed)
