"""The hourly live cycle: ingest the candles that just closed, then decide them. One flow, so a
late ingest delays the decisions instead of leaving a candle undecided. A failed ingest (an
order book, an extra timeframe, a symbol) does not stop the decisions: they use what is stored,
and the freshness check refuses to trade on a candle that did not arrive; the run still fails
afterwards, naming what was not ingested."""

from __future__ import annotations

from prefect import flow

from flows.decide import decide
from flows.ingest import IngestFailed, ingest
from flows.run_logs import set_up_logs
from services.decide.live import LiveReport


@flow(name="trade")
def trade() -> LiveReport:
    set_up_logs()
    try:
        ingest()
        missing = None
    except IngestFailed as exc:
        missing = exc
    report = decide()
    if missing is not None:
        raise missing
    return report
