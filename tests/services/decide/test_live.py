"""A live decision runs with the process's start-up frozen out of the collector's walks (a full
walk costs more than the decision), and leaves the collector as it found it."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from core.clock import FakeClock
from infra.alerts import Alerts
from infra.ledger.ledger import Ledger
from services.collector import RARE_COLLECTIONS
from services.decide.live import decide_live
from tests.services.decide.fakes import BUYERS, FixedModel, config
from tests.services.decide.test_batch_live_replay import close_of_newest


@dataclass
class CollectorWitness(FixedModel):
    """A model that notes the collector's state each time it is asked."""

    seen: list[tuple[bool, tuple[int, int, int]]] = field(default_factory=list)

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        self.seen.append((gc.get_freeze_count() > 0, gc.get_threshold()))
        return super().predict(features)


def test_decide_live_when_deciding_then_start_up_frozen_and_collector_restored_after(
    stored: Ledger, btc_1h: pd.DataFrame
) -> None:
    before = gc.get_threshold()
    model = CollectorWitness()
    clock = FakeClock(close_of_newest(btc_1h).to_pydatetime() + pd.Timedelta(minutes=2))
    report = decide_live(
        stored, "paper", None, model, BUYERS, replace(config(), catch_up_candles=2), clock, Alerts()
    )
    assert len(report.candle_times) == 2
    assert set(model.seen) == {(True, RARE_COLLECTIONS)}  # asked, and each time so
    assert (gc.get_freeze_count(), gc.get_threshold()) == (0, before)
