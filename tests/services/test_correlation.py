"""One correlation id per decision, from the decision to its order and the order's fills (the
replay and the live loop on real candles in a real ledger), and `bound` restoring what was
bound before, however its block ends."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pandas as pd
import pytest
from structlog.contextvars import bind_contextvars, get_contextvars, reset_contextvars

from core.clock import FakeClock
from infra.alerts import Alerts
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from infra.ledger.ledger import Ledger
from services.correlation import bound, correlation_id
from services.decide.live import decide_live
from services.decide.replay import replay
from tests.services.decide.fakes import BUYERS, ROWS, D, FixedModel, config


class Lines(logging.Handler):
    """(logger, message, correlation id bound when it was logged) of every `tradeflow` record."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.name, record.getMessage(), correlation_id()))


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler, logger = Lines(), logging.getLogger("tradeflow")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_bound_when_nested_then_inner_wins_and_outer_comes_back() -> None:
    assert correlation_id() is None
    with bound(correlation_id="request-1", route="/kill-switch"):
        with bound(correlation_id="paper:BTC/USDT:1h:1"):
            assert correlation_id() == "paper:BTC/USDT:1h:1"
            assert get_contextvars()["route"] == "/kill-switch"
        assert correlation_id() == "request-1"
    assert correlation_id() is None
    assert "route" not in get_contextvars()


def test_bound_when_id_is_none_then_the_outer_id_is_kept() -> None:
    with bound(correlation_id="request-1"), bound(correlation_id=None):
        assert correlation_id() == "request-1"


def test_bound_when_block_raises_then_restored() -> None:
    with bound(correlation_id="outer"):
        with pytest.raises(ZeroDivisionError), bound(correlation_id="inner"):
            _ = 1 / 0
        assert correlation_id() == "outer"


def test_correlation_id_when_bound_through_structlog_then_read_here() -> None:
    tokens = bind_contextvars(correlation_id="from-structlog")
    try:
        assert correlation_id() == "from-structlog"
    finally:
        reset_contextvars(**tokens)
    assert correlation_id() is None


def test_replay_when_orders_fill_then_each_order_and_fill_line_carries_its_decision_id(
    stored: Ledger, lines: Lines
) -> None:
    exchange = SimulatedBroker(SimulationConfig(slippage_bps=D(0), fee_rate=D(0)))
    report = replay(stored, exchange, FixedModel(), BUYERS, config(), 10, Alerts())
    assert report.orders >= 2
    assert report.fills >= 2
    decision_of = {o.client_order_id: o.decision_id for o in stored.orders.find("paper")}
    orders = [(m, cid) for name, m, cid in lines.lines if name == "tradeflow.orders"]
    sent = [(m, cid) for m, cid in orders if m.startswith("order ")]
    filled = [(m, cid) for m, cid in orders if m.startswith("fill ")]
    assert len(sent) == report.orders
    assert len(filled) == len(stored.fills.history("paper")) >= 2
    for message, cid in sent + filled:
        coid = next(c for c in decision_of if c in message)
        assert cid == decision_of[coid]  # the order's decision, on the order and on its fills
    recorded = [cid for name, _, cid in lines.lines if name == "tradeflow.decisions"]
    assert len(recorded) == sum(report.decided.values())
    assert set(decision_of.values()) <= set(recorded)
    assert correlation_id() is None


def test_decide_live_when_candles_decided_then_one_info_line_each_under_its_decision_id(
    stored: Ledger, btc_1h: pd.DataFrame, lines: Lines
) -> None:
    close = btc_1h["open_time"].iloc[ROWS - 1] + pd.Timedelta(hours=1)
    clock = FakeClock(close.to_pydatetime() + timedelta(minutes=10))
    cfg = config(max_candle_age=timedelta(hours=1, minutes=5))
    report = decide_live(stored, "paper", None, FixedModel(), BUYERS, cfg, clock, Alerts())
    logger = logging.getLogger("tradeflow.decisions")
    logger.setLevel(logging.INFO)  # what a run logs by default: the live lines, not the debug
    try:
        again = decide_live(stored, "paper", None, FixedModel(), BUYERS, cfg, clock, Alerts())
    finally:
        logger.setLevel(logging.NOTSET)
    assert again.candle_times == []  # nothing new: nothing logged the second time
    decided = [(m, cid) for name, m, cid in lines.lines if m.startswith("decided ")]
    ids = {d.decision_id for d in stored.orders.decisions("paper")}
    assert len(decided) == len(ids) == len(report.candle_times) * 2
    assert {cid for _, cid in decided} == ids
    newest = [m for m, _ in decided if "order tf-" in m]
    assert len(newest) == len(report.to_send) == 2  # the fresh candle's BUYs name their orders
    assert sum("denied STALE_CANDLE" in m for m, _ in decided) == len(ids) - 2
