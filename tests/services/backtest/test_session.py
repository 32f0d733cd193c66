"""A backtest is stored whole or not at all: decisions streamed to the ledger during the run
are removed when a later step fails."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from infra.ledger.ledger import Ledger
from infra.ledger.memory import MemoryLedger
from services.backtest.compose import BacktestAlerts
from services.backtest.engine import BacktestWindow, EmptyWindow, recent_window
from services.backtest.session import BacktestParts, backtest_and_store
from tests.services.backtest.test_identity import AGENTS, CANDLES, RsiModel, _config
from tests.services.decide.fakes import D


class ReportFailed(RuntimeError):
    pass


def parts(ledger: Ledger, account: str) -> BacktestParts:
    cfg = replace(_config(), account=account)
    return BacktestParts(
        scratch=MemoryLedger(ledger.backtests.decision_sink(account)),
        exchange=SimulatedBroker(SimulationConfig()),
        model=RsiModel(),
        panel=AGENTS,
        cfg=cfg,
        alerts=BacktestAlerts(),
        starting_cash=D(10000),
    )


def test_backtest_and_store_when_the_report_fails_then_nothing_of_the_run_stays(
    ledger: Ledger, btc_1h: pd.DataFrame, eth_1h: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("infra.ledger.backtests._CHUNK", 50)  # some chunks written mid-run
    frames = {"BTC/USDT": btc_1h, "ETH/USDT": eth_1h}
    start = btc_1h["open_time"].iloc[1000].to_pydatetime()
    window = BacktestWindow(start, start + timedelta(hours=CANDLES))

    def broken(result: object) -> Path:
        assert len(ledger.orders.decisions("bt-r1")) >= 50  # streamed before the failure
        raise ReportFailed("disk full")

    with pytest.raises(ReportFailed):
        backtest_and_store(
            ledger, frames.__getitem__, parts(ledger, "bt-r1"), window, "r1",
            datetime.now(UTC), {}, broken,
        )  # fmt: skip
    assert ledger.orders.decisions("bt-r1") == []
    assert ledger.backtests.get("r1") is None

    run, _ = backtest_and_store(
        ledger, frames.__getitem__, parts(ledger, "bt-r2"), window, "r2",
        datetime.now(UTC), {}, lambda r: Path("report.html"),
    )  # fmt: skip
    assert ledger.backtests.get("r2") == run
    assert len(ledger.orders.decisions("bt-r2")) == CANDLES * 2


def test_recent_window_when_symbols_end_apart_then_the_last_days_up_to_the_older_newest(
    ledger: Ledger, btc_1h: pd.DataFrame, eth_1h: pd.DataFrame
) -> None:
    cfg = _config()
    ledger.candles.upsert("binance", "BTC/USDT", "1h", btc_1h.head(500))
    ledger.candles.upsert("binance", "ETH/USDT", "1h", eth_1h.head(480))
    window = recent_window(ledger, cfg, days=7)
    newest_of_both = eth_1h["open_time"].iloc[479].to_pydatetime() + timedelta(hours=1)
    assert (window.start, window.end) == (newest_of_both - timedelta(days=7), newest_of_both)


def test_recent_window_when_a_symbol_has_no_candles_then_empty_window_error(
    ledger: Ledger, btc_1h: pd.DataFrame
) -> None:
    ledger.candles.upsert("binance", "BTC/USDT", "1h", btc_1h.head(100))
    with pytest.raises(EmptyWindow, match="no 1h candles stored"):
        recent_window(ledger, _config(), days=7)
