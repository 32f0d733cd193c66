"""Holds handed to a ledger in bulk (core.holds) are recorded once each, as decisions, and
counted by action; the SQL ledger (SQLite, PostgreSQL) and the memory ledger alike."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.agents.panel import RulePanel
from core.agents.rules import BearAgent, BullAgent
from core.consensus import ConsensusConfig
from core.decision import Sizing
from core.holds import HoldDecider, HoldRows, HoldSettings
from core.risk.limits import RiskLimits
from infra.ledger.ledger import open_ledger
from infra.ledger.memory import MemoryLedger
from tests.conftest import _postgres_schema_url

T0 = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp())
NAMES = ("ema_ratio_12", "macd_hist", "rsi_14", "trend_regime", "vol_regime_pct")
SETTINGS = HoldSettings(
    model_name="m",
    model_version="1",
    feature_set_version="fs",
    tradeable=True,
    quality={},
    consensus=ConsensusConfig(),
    sizing=Sizing(Decimal(100)),
    limits=RiskLimits(
        whitelist=frozenset({"BTC/USDT", "ETH/USDT"}),
        max_order_notional=Decimal(100),
        max_position_notional=Decimal(100),
        max_total_exposure=Decimal(200),
        max_daily_loss=Decimal(50),
    ),
)
DECIDE = HoldDecider(SETTINGS, RulePanel((BullAgent(), BearAgent())))


def rows(n: int, first: int = 0) -> HoldRows:
    """`n` candle times of BTC and ETH, alternating, from the `first`-th hour; no entries."""
    k = np.arange(first * 2, (first + n) * 2)
    rng = np.random.default_rng(first)
    return HoldRows(
        account="bt",
        timeframe="1h",
        symbols=("BTC/USDT", "ETH/USDT"),
        symbol=k % 2,
        opened=T0 + (k // 2) * 3600,
        close=np.where(k % 2 == 0, 60_000.5, 3_000.25),
        probability=np.full(len(k), 0.4),
        edge=np.full(len(k), -0.002),
        index={name: i for i, name in enumerate(NAMES)},
        features=rng.normal(0.0, 0.01, (len(k), len(NAMES))),
        books={},
    )


@pytest.fixture(params=["sqlite", "postgresql", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryLedger()
    elif request.param == "sqlite":
        yield open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    else:
        for url in _postgres_schema_url():
            yield open_ledger(url)


def test_record_holds_when_handed_twice_then_each_recorded_once_and_counted_once(
    store: Any,
) -> None:
    store.orders.record_holds(rows(3), DECIDE, "sim")
    store.orders.record_holds(rows(4), DECIDE, "sim")  # the first three hours again, and one

    decisions = store.orders.decisions("bt")
    assert len(decisions) == 8
    assert {d.action.value for d in decisions} == {"HOLD"}
    assert store.orders.hold_actions() == {"HOLD": 8}
    assert store.orders.hold_actions() == {}, "counted once: asking again finds none new"
    newest = datetime.fromtimestamp(T0 + 3 * 3600, UTC)
    assert store.orders.last_decided("bt", "ETH/USDT", "1h") == newest


def test_record_holds_when_none_are_handed_then_nothing_recorded(store: Any) -> None:
    store.orders.record_holds(rows(0), DECIDE, "sim")
    assert store.orders.decisions("bt") == []
    assert store.orders.hold_actions() == {}
