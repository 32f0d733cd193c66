from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from prefect import flow

from infra.jobs.decisions import DecisionRunReport
from tasks.decide import decide_candles, load_champion
from tasks.reconcile import reconcile_with_broker


@flow(name="decide", log_prints=True)
def decide(
    candles: int = 1, replay: bool = False, on_candle: Callable[[datetime], None] | None = None
) -> DecisionRunReport:
    """Decide the newest closed candle (live, on schedule) or replay the newest `candles`.

    Each run is a fresh process under a Prefect worker: it reconciles with the broker first,
    and stays HALTED (decisions recorded, no orders) if that finds what it cannot explain."""
    reconcile_with_broker(after_start=True)
    model = load_champion()
    return decide_candles(model, candles, replay, on_candle)
