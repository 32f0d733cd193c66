"""A flat symbol's hold set apart by the step and decided in bulk (core.holds) is the decision
the step would have made, on real candles with the offline rule agents."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from core.agents.panel import Deliberation, PanelRequest, RulePanel
from core.agents.rules import BearAgent, BullAgent
from core.decision import Decision
from core.holds import HoldDecider, NotAHold
from core.risk.limits import RiskState
from core.types import DecisionId, Symbol
from infra.ledger.memory import MemoryLedger
from services.decide.batch import FEATURE_WINDOW, DecisionBatch, prepare_batch
from services.decide.loop import hold_settings
from services.decide.step import decide_at
from tests.services.backtest.test_identity import RsiModel
from tests.services.decide.fakes import SYMBOLS, D, config

CANDLES = 60
PANEL = RulePanel((BullAgent(), BearAgent()))
CFG = replace(config(), record_provenance=False)  # as a backtest decides: holds set apart


@pytest.fixture(scope="module")
def batch(btc_1h: pd.DataFrame, eth_1h: pd.DataFrame) -> DecisionBatch:
    scratch = MemoryLedger()
    for symbol, frame in zip(SYMBOLS, (btc_1h, eth_1h), strict=True):
        scratch.candles.upsert("binance", symbol, "1h", frame.head(FEATURE_WINDOW + CANDLES))
    return prepare_batch(scratch, RsiModel(), CFG, CANDLES)


def _state(batch: DecisionBatch, t: pd.Timestamp) -> RiskState:
    """BTC held, ETH flat: only ETH's holds may be set apart."""
    prices = {Symbol(s): p for s, p in batch.prices_at(t).items()}
    positions = {Symbol("BTC/USDT"): D("0.01")}
    return RiskState(cash=D(10000), positions=positions, prices=prices, day_start_equity=D(10000))


def _decide_every_candle(
    batch: DecisionBatch, marks: list[tuple[int, int]] | None
) -> list[Decision]:
    out = []
    for t in batch.times:
        now = t.to_pydatetime() + timedelta(hours=1)
        out += decide_at(batch, t, _state(batch, t), now, CFG, PANEL, holds=marks).decisions
    return out


def test_hold_decider_when_set_apart_then_each_is_the_decision_the_step_makes(
    batch: DecisionBatch,
) -> None:
    marks: list[tuple[int, int]] = []
    kept = _decide_every_candle(batch, marks)
    whole = {d.decision_id: d for d in _decide_every_candle(batch, None)}
    held = list(
        HoldDecider(hold_settings(batch, CFG), PANEL).decisions(batch.hold_rows(CFG, marks))
    )

    assert held, "the window should hold ETH flat somewhere"
    assert {d.input.symbol for d in held} == {"ETH/USDT"}, "a held symbol is never set apart"
    assert len(kept) + len(held) == len(whole)
    assert len(kept) > len(held) / 10, "some candles are decided by the step itself"
    for decision in kept + held:
        assert decision == whole[decision.decision_id]


def test_hold_decider_when_a_row_would_enter_then_refused_as_not_a_hold(
    batch: DecisionBatch,
) -> None:
    marks: list[tuple[int, int]] = []
    _decide_every_candle(batch, marks)
    rows = batch.hold_rows(CFG, marks[:3])
    entering = replace(rows, edge=np.full(len(rows), 0.05))  # far above the entry bar
    with pytest.raises(NotAHold, match="proposed BUY: not a hold"):
        list(HoldDecider(hold_settings(batch, CFG), PANEL).decisions(entering))
    with pytest.raises(NotAHold, match="the policy enters, not a hold"):
        HoldDecider(hold_settings(batch, CFG), PANEL).columns(entering)


class _ChatPanel:
    name, settings = "llm", {}

    def deliberate(
        self, requests: list[PanelRequest], now: object
    ) -> dict[DecisionId, Deliberation]:
        raise AssertionError("never asked")


def test_hold_decider_when_the_panel_reads_more_than_the_candle_then_refused(
    batch: DecisionBatch,
) -> None:
    with pytest.raises(NotAHold, match="llm panel does not vote on the candle alone"):
        HoldDecider(hold_settings(batch, CFG), _ChatPanel())  # type: ignore[arg-type]


def test_hold_rows_when_some_are_taken_then_their_values_follow_in_order(
    batch: DecisionBatch,
) -> None:
    marks: list[tuple[int, int]] = []
    _decide_every_candle(batch, marks)
    rows = batch.hold_rows(CFG, marks)
    keep = np.arange(len(rows)) % 2 == 1
    taken = rows.take(keep)
    assert len(taken) == int(keep.sum())
    np.testing.assert_array_equal(taken.opened, rows.opened[keep])
    np.testing.assert_array_equal(taken.features, rows.features[keep])
    np.testing.assert_array_equal(taken.edge, rows.edge[keep])
