"""A replay whose account stays quiet (flat, nothing open, trading active) sets whole candles
apart as holds without the risk snapshot, the breaker or the step: on real candles, it records
the very decisions, orders and fills that deciding every candle the full way records."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.orders import Order, OrderOrigin
from core.risk.limits import RiskState
from core.risk.state import TradingState
from core.types import ClientOrderId, DecisionId, Side, Symbol
from infra.alerts import Alerts
from infra.brokers.simulated import SimulatedBroker
from infra.ledger.memory import MemoryLedger
from services.backtest.engine import BacktestWindow, load_window, window_candles
from services.decide import loop
from services.decide.batch import FEATURE_WINDOW
from services.decide.replay import replay
from tests.services.backtest.test_identity import AGENTS, SIMULATION, RsiModel, _config
from tests.services.decide.fakes import D

CANDLES = 300


@pytest.fixture(scope="module")
def frames(btc_1h: pd.DataFrame, eth_1h: pd.DataFrame) -> dict[str, pd.DataFrame]:
    rows = FEATURE_WINDOW + CANDLES
    return {"BTC/USDT": btc_1h.head(rows), "ETH/USDT": eth_1h.head(rows)}


class DipModel(RsiModel):
    """Buys deep dips only, and leaves as soon as the dip is over: flat most of the time."""

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        rsi = features["rsi_14"].to_numpy()
        return np.where(rsi < 0.35, np.clip(0.5 + (0.5 - rsi) * 0.8, 0.0, 1.0), 0.49)


def _replay(frames: dict[str, pd.DataFrame]) -> MemoryLedger:
    cfg = replace(_config(), record_provenance=False)  # as a backtest: holds set apart
    start = frames["BTC/USDT"]["open_time"].iloc[FEATURE_WINDOW].to_pydatetime()
    end = frames["BTC/USDT"]["open_time"].iloc[-1].to_pydatetime() + timedelta(hours=1)
    window = BacktestWindow(start, end)
    scratch = MemoryLedger()
    scratch.accounts.ensure(cfg.account, D(10000), start - timedelta(hours=1))
    loaded = load_window(lambda s: frames[s], scratch, cfg, window)
    candles = window_candles(loaded, window)
    replay(scratch, SimulatedBroker(SIMULATION), DipModel(), AGENTS, cfg, candles, Alerts(()))
    return scratch


@pytest.fixture
def snapshots(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """The times a risk snapshot was taken at."""
    taken: list[datetime] = []
    snapshot = loop.RiskSnapshots.snapshot

    def counted(self: loop.RiskSnapshots, prices: dict[str, D], now: datetime) -> object:
        taken.append(now)
        return snapshot(self, prices, now)

    monkeypatch.setattr(loop.RiskSnapshots, "snapshot", counted)
    return taken


def test_replay_when_the_account_stays_quiet_then_candles_skip_the_snapshot_and_record_the_same(
    frames: dict[str, pd.DataFrame], snapshots: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet = _replay(frames)
    quiet_snapshots = len(snapshots)
    monkeypatch.setattr(loop.DecisionLoop, "_quiet_after", lambda self, *a: None)
    snapshots.clear()
    full = _replay(frames)

    assert len(snapshots) >= CANDLES  # every candle the full way, with the breaker's own
    assert 0 < quiet_snapshots < len(snapshots) - 10, "some candles should have been quiet"
    account = _config().account
    decided = quiet.orders.decisions(account)
    assert len(decided) == CANDLES * len(frames)
    assert decided == full.orders.decisions(account)
    assert len(quiet.orders.find(account)) >= 4, "the window should trade"
    assert quiet.orders.find(account) == full.orders.find(account)
    assert quiet.fills.history(account) == full.fills.history(account)
    assert quiet.fills.positions(account) == full.fills.positions(account)
    assert quiet.accounts.cash(account) == full.accounts.cash(account)


class _AllFlatHolds:
    """A batch whose every symbol's candle is a flat hold, at row 7."""

    def flat_hold_row(self, symbol: str, t: pd.Timestamp, consensus: object) -> int:
        return 7

    def read_at(self, symbol: str, t: pd.Timestamp) -> None:
        raise AssertionError("a flat hold is never read")


def test_decide_when_an_order_opened_since_the_quiet_step_then_the_candle_goes_the_full_way() -> (
    None
):
    cfg = replace(_config(), record_provenance=False)
    ledger, t = MemoryLedger(), pd.Timestamp("2024-03-01", tz="UTC")
    ledger.accounts.ensure(cfg.account, D(10000), t.to_pydatetime())
    decider = loop.DecisionLoop(ledger, AGENTS, cfg, Alerts(()), holds_apart=True)
    decider.quiet = ledger.fills.count(cfg.account)  # as a flat, quiet step leaves it
    batch: Any = _AllFlatHolds()

    assert decider._quiet_holds(batch, t, ())
    assert decider.holds == [(0, 7), (1, 7)], "every symbol set apart, in symbol order"
    order = Order(
        ClientOrderId("tf-m-" + "0" * 28), None, Symbol("BTC/USDT"), Side.BUY, D(1),
        t.to_pydatetime(), t.to_pydatetime(), origin=OrderOrigin.MANUAL,
    )  # fmt: skip
    ledger.orders.insert_many([order], cfg.account, "paper")
    assert not decider._quiet_holds(batch, t, ())
    assert decider.quiet is None, "no longer quiet: candles go the full way until a step says"
    assert decider.holds == [(0, 7), (1, 7)], "nothing more set apart"


def test_decide_when_the_run_decides_again_over_decided_candles_then_never_quiet() -> None:
    cfg = replace(_config(), record_provenance=False)
    ledger = MemoryLedger()
    decider = loop.DecisionLoop(ledger, AGENTS, cfg, Alerts(()), holds_apart=True)
    decider.quiet = 0
    batch: Any = _AllFlatHolds()
    t = pd.Timestamp("2024-03-01", tz="UTC")
    assert not decider._quiet_holds(batch, t, {DecisionId("earlier")})


@pytest.mark.parametrize(
    "moved",
    [
        {"positions": {Symbol("BTC/USDT"): D("0.01")}},
        {"open_orders": 1},
        {"trading_state": TradingState.HALTED},
        {"tripped": True},
    ],
    ids=["a-holding", "an-open-order", "trading-halted", "the-breaker-tripped"],
)
def test_quiet_after_when_the_step_left_anything_open_then_not_quiet(
    moved: dict[str, Any],
) -> None:
    cfg = replace(_config(), record_provenance=False)
    decider = loop.DecisionLoop(MemoryLedger(), AGENTS, cfg, Alerts(()), holds_apart=True)
    decider.ledger.accounts.ensure(cfg.account, D(10000), datetime(2024, 3, 1, tzinfo=UTC))
    tripped = moved.pop("tripped", False)
    flat = RiskState(cash=D(10000), positions={}, prices={})
    assert decider._quiet_after(flat, False, []) == 0
    assert decider._quiet_after(replace(flat, **moved), tripped, []) is None
