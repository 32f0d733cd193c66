"""Backtest runs in the SQL ledger (SQLite and PostgreSQL): a run and everything its account
recorded are stored in one go, read back exactly, never twice, and never half."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pandas as pd
import pytest
from sqlalchemy.exc import IntegrityError

from core.records import BacktestRun
from infra.ledger.backtests import RunAlreadyStored
from infra.ledger.ledger import Ledger
from infra.ledger.memory import MemoryLedger
from tests.services.backtest.test_identity import CANDLES, FEATURE_WINDOW, run_backtest


@pytest.fixture(scope="module")
def scratch(btc_1h: pd.DataFrame, eth_1h: pd.DataFrame) -> MemoryLedger:
    rows = FEATURE_WINDOW + CANDLES
    return run_backtest({"BTC/USDT": btc_1h.head(rows), "ETH/USDT": eth_1h.head(rows)})


def a_run(account: str = "paper") -> BacktestRun:
    at = datetime(2024, 2, 1, tzinfo=UTC)
    return BacktestRun(
        run_id="r1", account=account, created_at=at, symbols=("BTC/USDT", "ETH/USDT"),
        timeframe="1h", start=at, end=at, model_name="rsi", model_version="1",
        params={"fee_rate": "0.001"}, summary={"total_return": 0.01, "sharpe": None},
    )  # fmt: skip


def test_save_when_a_run_is_stored_then_its_account_reads_back_as_recorded(
    ledger: Ledger, scratch: MemoryLedger
) -> None:
    records = scratch.records("paper")
    run = replace(a_run(), starting_cash=records.starting_cash, cash=records.cash)
    ledger.backtests.save(run, records)
    assert ledger.backtests.get("r1") == run
    assert ledger.backtests.recent() == [run]
    assert ledger.accounts.names() == []  # a backtest's account is no trading account
    assert ledger.orders.decisions("paper") == scratch.orders.decisions("paper")
    assert ledger.orders.find("paper") == scratch.orders.find("paper")
    assert ledger.fills.history("paper") == scratch.fills.history("paper")
    assert ledger.fills.positions("paper").keys() == scratch.fills.positions("paper").keys()


def test_save_when_the_run_is_stored_already_then_refused_and_nothing_doubles(
    ledger: Ledger, scratch: MemoryLedger
) -> None:
    ledger.backtests.save(a_run(), scratch.records("paper"))
    with pytest.raises(RunAlreadyStored, match="r1"):
        ledger.backtests.save(a_run(), scratch.records("paper"))
    assert len(ledger.orders.decisions("paper")) == len(scratch.orders.decisions("paper"))


def test_save_when_a_row_is_refused_midway_then_nothing_of_the_run_is_written(
    ledger: Ledger, scratch: MemoryLedger
) -> None:
    records = scratch.records("paper")
    broken = replace(records, fills=[*records.fills, records.fills[0]])  # a duplicate fill id
    with pytest.raises(IntegrityError, match=r"(?i)unique|duplicate"):
        ledger.backtests.save(a_run(), broken)
    assert ledger.backtests.get("r1") is None
    assert ledger.orders.decisions("paper") == []
    assert ledger.accounts.names() == []


def test_save_when_records_belong_to_another_account_then_refused(
    ledger: Ledger, scratch: MemoryLedger
) -> None:
    with pytest.raises(ValueError, match="records of 'paper'"):
        ledger.backtests.save(a_run(account="bt-other"), scratch.records("paper"))
    assert ledger.backtests.get("r1") is None


def test_decision_sink_when_decisions_stream_during_the_run_then_stored_as_if_held(
    ledger: Ledger, scratch: MemoryLedger, btc_1h: pd.DataFrame, eth_1h: pd.DataFrame
) -> None:
    rows = FEATURE_WINDOW + CANDLES
    frames = {"BTC/USDT": btc_1h.head(rows), "ETH/USDT": eth_1h.head(rows)}
    streamed = run_backtest(frames, ledger.backtests.decision_sink("paper"))
    assert streamed.orders.decisions("paper") == []  # none held in memory
    ledger.backtests.save(a_run(), streamed.records("paper"))
    assert ledger.orders.decisions("paper") == scratch.orders.decisions("paper")
    assert ledger.orders.find("paper") == scratch.orders.find("paper")


def test_discard_when_a_run_failed_after_streaming_then_its_rows_are_gone_and_others_kept(
    ledger: Ledger, btc_1h: pd.DataFrame, eth_1h: pd.DataFrame
) -> None:
    rows = FEATURE_WINDOW + CANDLES
    frames = {"BTC/USDT": btc_1h.head(rows), "ETH/USDT": eth_1h.head(rows)}
    sink = ledger.backtests.decision_sink("paper")
    run_backtest(frames, sink)
    sink.flush()
    assert len(ledger.orders.decisions("paper")) == CANDLES * 2
    assert ledger.backtests.discard("paper") == CANDLES * 2
    assert ledger.orders.decisions("paper") == []


def test_discard_when_the_run_was_stored_then_refused_and_kept(
    ledger: Ledger, scratch: MemoryLedger
) -> None:
    ledger.backtests.save(a_run(), scratch.records("paper"))
    with pytest.raises(RunAlreadyStored, match="stored run"):
        ledger.backtests.discard("paper")
    assert ledger.orders.decisions("paper") != []
