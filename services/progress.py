"""Progress of a run as log records on one logger, `tradeflow.progress`: the CLI's progress bar
listens to it, and Prefect sends it to the run's logs (PREFECT_LOGGING_EXTRA_LOGGERS)."""

from __future__ import annotations

import logging
from datetime import datetime

log = logging.getLogger("tradeflow.progress")


def stage(name: str) -> None:
    log.info("stage: %s", name, extra={"stage": name})


def candle(opened: datetime) -> None:
    log.debug("decided the candle opening at %s", opened, extra={"candle": opened})
