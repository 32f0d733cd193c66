"""What a decision cost, kept in its provenance: its share of the batch's model call and of the
step. A timer that ticks one second a reading makes every figure exact; a backtest (no
provenance) never reads it, and the step without one stays deterministic; the live loop times
with the wall clock (a replay run does not), and a replay of a timed decision is identical."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from core.clock import FakeClock
from core.ports import Model
from infra.alerts import Alerts
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from infra.ledger.ledger import Ledger
from services.decide.batch import prepare_batch
from services.decide.live import decide_live
from services.decide.replay import replay
from services.decide.step import decide_at
from services.decision_replay import replay_decision
from tests.services.decide.fakes import BUYERS, SYMBOLS, FixedModel, config
from tests.services.decide.test_batch_live_replay import close_of_newest
from tests.services.decide.test_step import TIMES, batch, close_of, state


class Ticks:
    """A timer one second later at each reading, which counts its readings."""

    def __init__(self) -> None:
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        return float(self.readings - 1)


def test_decide_at_when_provenance_kept_then_each_decision_keeps_its_share_of_the_costs() -> None:
    t = TIMES[2]
    timed = replace(batch(), predict_seconds=0.5, predictions=8)
    step = decide_at(timed, t, state(), close_of(t), config(), BUYERS, timer=Ticks())
    # Readings 0 and 1 around the panel (1 s for two symbols), then 2..3 and 4..5 per decision.
    share = {"predict_s": 0.5 / 8, "predict_rows": 8, "decide_s": 0.5 + 1.0}
    assert [d.provenance["timings"] for d in step.decisions] == [share, share]


def test_decide_at_when_the_model_call_was_not_timed_then_no_predict_share() -> None:
    t = TIMES[2]
    step = decide_at(batch(), t, state(), close_of(t), config(), BUYERS, timer=Ticks())
    assert [d.provenance["timings"] for d in step.decisions] == [{"decide_s": 1.5}] * 2


def test_decide_at_when_no_provenance_kept_then_the_timer_is_never_read() -> None:
    t, ticks = TIMES[2], Ticks()
    cfg = replace(config(), record_provenance=False)  # as a backtest runs
    step = decide_at(batch(), t, state(), close_of(t), cfg, BUYERS, timer=ticks)
    assert len(step.decisions) == 2
    assert (ticks.readings, [dict(d.provenance) for d in step.decisions]) == (0, [{}, {}])


def test_decide_at_when_no_timer_given_then_provenance_without_timings() -> None:
    t = TIMES[2]
    step = decide_at(batch(), t, state(), close_of(t), config(), BUYERS)
    assert all("panel" in d.provenance and "timings" not in d.provenance for d in step.decisions)


def test_prepare_batch_when_timed_then_the_model_call_and_the_rows_it_predicted(
    stored: Ledger,
) -> None:
    ticks = Ticks()
    b = prepare_batch(stored, FixedModel(), config(), 5, timer=ticks)
    assert (b.predict_seconds, b.predictions, ticks.readings) == (1.0, len(SYMBOLS) * 5, 2)


def load(name: str, version: str) -> Model:
    assert (name, version) == ("fixed", "1")
    return FixedModel()


def test_decide_live_when_recorded_then_timings_stored_and_a_replay_identical(
    stored: Ledger, btc_1h: pd.DataFrame
) -> None:
    cfg = replace(config(), catch_up_candles=3)
    clock = FakeClock(close_of_newest(btc_1h).to_pydatetime() + pd.Timedelta(minutes=2))
    decide_live(stored, "paper", None, FixedModel(), BUYERS, cfg, clock, Alerts())
    records = stored.orders.decisions("paper")
    timings = [r.provenance["timings"] for r in records]
    assert len(timings) == 6
    assert all(t["predict_rows"] == 6 and t["predict_s"] >= 0 and t["decide_s"] >= 0
               for t in timings)  # fmt: skip
    assert len({t["predict_s"] for t in timings}) == 1  # one call, shared alike
    results = [replay_decision(stored, r.decision_id, load, BUYERS, cfg) for r in records]
    assert [r.differences for r in results] == [[]] * 6


def test_replay_when_recorded_then_no_timings_so_a_second_replay_records_the_same(
    stored: Ledger,
) -> None:
    exchange = SimulatedBroker(SimulationConfig())
    replay(stored, exchange, FixedModel(), BUYERS, config(), 4, Alerts())
    records = stored.orders.decisions("paper")
    assert len(records) == 8
    assert all("panel" in r.provenance and "timings" not in r.provenance for r in records)
