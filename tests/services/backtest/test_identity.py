"""Same code, same answers: one window of real candles through the backtest engine (memory
ledger, in-memory exchange) and candle by candle through the live path (SQL ledger, paper
exchange, one decide call per closed candle, orders sent as the trade flow sends them). The
decisions, client order ids, orders, fills, fees and final positions must be identical."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from core.agents.panel import RulePanel
from core.agents.rules import BearAgent, BullAgent
from core.clock import FixedClock
from core.decision import Decision
from core.holds import HoldDecider, HoldRows
from core.orders import Fill
from core.portfolio import Position
from core.ports import DecisionSink
from core.records import DecisionRecord
from core.risk.breaker import TradeResult
from core.types import Symbol
from infra.alerts import Alerts
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from infra.ledger.ledger import Ledger
from infra.ledger.memory import MemoryLedger
from services.backtest.engine import BacktestWindow, load_window, window_candles
from services.decide.batch import FEATURE_WINDOW
from services.decide.live import decide_live
from services.decide.replay import replay
from services.execution import submit_order
from tests.services.decide.fakes import SYMBOLS, D, LinearEdge, config

CANDLES = 120  # decided candles: about five days of 1h candles
AGENTS = RulePanel((BullAgent(), BearAgent()))
# Partial fills and a candle of latency: the paths must agree on the hard cases too.
SIMULATION = SimulationConfig(liquidity=D("0.00001"), latency_candles=1)


class RsiModel(LinearEdge):
    """P(up) from the RSI: a model that buys dips and sells rallies, so the window trades."""

    name, version, feature_set_version = "rsi", "1", "fs-test"

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return np.clip(0.5 + (0.5 - features["rsi_14"].to_numpy()) * 0.8, 0.0, 1.0)


@pytest.fixture(scope="module")
def frames(btc_1h: pd.DataFrame, eth_1h: pd.DataFrame) -> dict[str, pd.DataFrame]:
    rows = FEATURE_WINDOW + CANDLES
    return {"BTC/USDT": btc_1h.head(rows), "ETH/USDT": eth_1h.head(rows)}


def _config():  # type: ignore[no-untyped-def]
    return replace(config(max_total_exposure=D(2500)), catch_up_candles=1)


def run_backtest(frames: dict[str, pd.DataFrame], sink: DecisionSink | None = None) -> MemoryLedger:
    # As services.backtest.compose configures it: no provenance, so holds are decided apart.
    cfg = replace(_config(), record_provenance=False)
    start = frames["BTC/USDT"]["open_time"].iloc[FEATURE_WINDOW].to_pydatetime()
    end = frames["BTC/USDT"]["open_time"].iloc[-1].to_pydatetime() + timedelta(hours=1)
    window = BacktestWindow(start, end)
    scratch = MemoryLedger(sink)
    scratch.accounts.ensure(cfg.account, D(10000), start - timedelta(hours=1))
    loaded = load_window(lambda s: frames[s], scratch, cfg, window)
    exchange = SimulatedBroker(SIMULATION)
    candles = window_candles(loaded, window)
    replay(scratch, exchange, RsiModel(), AGENTS, cfg, candles, Alerts(()))
    return scratch


def run_live(
    ledger: Ledger,
    frames: dict[str, pd.DataFrame],
    simulation: SimulationConfig = SIMULATION,
    candles: int = CANDLES,
) -> None:
    """As the hourly schedule would: each candle stored when it closes, then decided, then
    its orders sent."""
    cfg = _config()
    start = frames["BTC/USDT"]["open_time"].iloc[FEATURE_WINDOW].to_pydatetime()
    ledger.accounts.ensure(cfg.account, D(10000), start - timedelta(hours=1))
    paper = SimulatedBroker(simulation)
    for symbol, frame in frames.items():
        ledger.candles.upsert(cfg.exchange, symbol, cfg.timeframe, frame.head(FEATURE_WINDOW))
    for i in range(FEATURE_WINDOW, FEATURE_WINDOW + candles):
        for symbol, frame in frames.items():
            ledger.candles.upsert(cfg.exchange, symbol, cfg.timeframe, frame.iloc[i : i + 1])
        close = frames["BTC/USDT"]["open_time"].iloc[i].to_pydatetime() + timedelta(hours=1)
        clock = FixedClock(close)
        report = decide_live(ledger, paper.name, paper, RsiModel(), AGENTS, cfg, clock, Alerts(()))
        for coid in report.to_send:
            submit_order(ledger, paper, coid, clock)


def _at_scale(positions: dict[Symbol, Position]) -> dict[Symbol, tuple[Decimal, ...]]:
    """Positions to 12 places. PostgreSQL keeps NUMERIC(38, 18): an average price that a division
    made longer is stored rounded at 18 places, and the next fill's P&L starts from that, so the
    last digits drift (1e-18 per fill). Orders, fills and cash have no division: exact."""
    q = Decimal("1e-12")
    return {
        s: (p.quantity.quantize(q), p.avg_price.quantize(q), p.realised_pnl.quantize(q))
        for s, p in positions.items()
    }


def _decided(decisions: list[DecisionRecord]) -> list[DecisionRecord]:
    return [replace(d, provenance={}) for d in decisions]


def _trades(trades: list[TradeResult]) -> list[tuple[object, ...]]:
    q = Decimal("1e-12")  # realised P&L is stored as the position's: see _at_scale
    return [(t.closed_at, t.pnl.quantize(q), t.notional) for t in trades]


def _fills(fills: list[Fill]) -> list[tuple[object, ...]]:
    return [(f.fill_id, f.client_order_id, f.side, f.quantity, f.price, f.fee, f.filled_at)
            for f in fills]  # fmt: skip


def test_backtest_when_run_beside_the_live_path_then_every_decision_order_and_fill_matches(
    ledger: Ledger, frames: dict[str, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    held: list[Decision] = []
    decisions = HoldDecider.decisions

    def holds_seen(self: HoldDecider, rows: HoldRows) -> Iterator[Decision]:
        for decision in decisions(self, rows):
            held.append(decision)
            yield decision

    monkeypatch.setattr(HoldDecider, "decisions", holds_seen)
    fast = run_backtest(frames)
    assert 0 < len(held) < CANDLES * len(SYMBOLS), "some candles are holds decided apart"
    run_live(ledger, frames)
    account = _config().account

    live_decisions = ledger.orders.decisions(account)
    fast_decisions = fast.orders.decisions(account)
    assert len(live_decisions) == CANDLES * len(SYMBOLS)
    assert [d.action for d in live_decisions].count(live_decisions[0].action) < len(
        live_decisions
    ), "the window should hold more than one kind of decision"
    # Provenance says which candles each run loaded (a live run loads a window per candle):
    # it differs by construction; everything decided must not.
    assert _decided(fast_decisions) == _decided(live_decisions)

    live_orders = ledger.orders.find(account)
    assert len(live_orders) >= 4, "the window should trade"
    assert fast.orders.find(account) == live_orders

    live_fills = ledger.fills.history(account)
    ordered = {o.client_order_id: o.quantity for o in live_orders}
    assert any(f.quantity < ordered[f.client_order_id] for f in live_fills), "some partial fills"
    assert _fills(fast.fills.history(account)) == _fills(live_fills)
    assert _at_scale(fast.fills.positions(account)) == _at_scale(ledger.fills.positions(account))
    assert fast.accounts.cash(account) == ledger.accounts.cash(account)
    assert _trades(fast.fills.closed_trades(account)) == _trades(
        ledger.fills.closed_trades(account)
    )
