"""The hourly live cycle: ingest the candles that just closed, then decide them. One flow, so a
late ingest delays the decisions instead of leaving a candle undecided."""

from __future__ import annotations

from prefect import flow

from flows.decide import decide
from flows.ingest import ingest
from services.decide.live import LiveReport


@flow(name="trade")
def trade() -> LiveReport:
    ingest()
    return decide()
