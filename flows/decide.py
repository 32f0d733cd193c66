from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from prefect import flow

from infra.jobs.decisions import DecisionRunReport
from tasks.decide import decide_candles, load_champion


@flow(name="decide", log_prints=True)
def decide(
    candles: int = 1, replay: bool = False, on_candle: Callable[[datetime], None] | None = None
) -> DecisionRunReport:
    """Decide the newest closed candle (live, on schedule) or replay the newest `candles`."""
    model = load_champion()
    return decide_candles(model, candles, replay, on_candle)
