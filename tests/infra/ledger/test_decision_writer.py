"""The decision writer process records a backtest's decisions as the in-process stream does;
a failure in it is raised in the parent and stops it."""

from __future__ import annotations

import resource
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from infra.ledger.backtests import DecisionStream
from infra.ledger.decision_writer import DecisionWriter, DecisionWriterFailed, can_write_apart
from infra.ledger.ledger import Ledger, open_ledger
from infra.ledger.memory import MemoryLedger
from services.decide.batch import FEATURE_WINDOW
from tests.services.backtest.test_identity import CANDLES, run_backtest


@pytest.fixture
def frames(btc_1h: pd.DataFrame, eth_1h: pd.DataFrame) -> dict[str, pd.DataFrame]:
    rows = FEATURE_WINDOW + CANDLES
    return {"BTC/USDT": btc_1h.head(rows), "ETH/USDT": eth_1h.head(rows)}


def test_decision_sink_when_the_ledger_is_a_file_or_a_server_then_a_writer_process(
    ledger: Ledger,
) -> None:
    sink = ledger.backtests.decision_sink("paper")
    try:
        assert isinstance(sink, DecisionWriter)
    finally:
        sink.close()
    assert isinstance(ledger.backtests.decision_sink("paper", in_process=True), DecisionStream)


def test_can_write_apart_when_the_ledger_is_in_memory_then_not() -> None:
    assert not can_write_apart("sqlite://")
    assert not can_write_apart("sqlite:///:memory:")
    assert can_write_apart("sqlite:////var/ledger.db")
    assert can_write_apart("postgresql+psycopg://u:p@127.0.0.1:5432/db")


def test_writer_when_a_row_is_refused_then_the_parent_is_told_why_and_nothing_follows(
    ledger: Ledger, frames: dict[str, pd.DataFrame]
) -> None:
    scratch = run_backtest(frames)
    made = [d for d, _ in scratch.records("paper").decisions]
    writer = ledger.backtests.decision_sink("paper")
    try:
        assert isinstance(writer, DecisionWriter)
        naive = replace(made[0], decided_at=made[0].decided_at.replace(tzinfo=None))
        writer.add(naive, "sim")
        with pytest.raises(DecisionWriterFailed, match="decision writer failed"):
            writer.flush()
        writer.add(made[1], "sim")  # after a failure, dropped
        with pytest.raises(DecisionWriterFailed):
            writer.flush()
    finally:
        writer.close()
    assert ledger.orders.decisions("paper") == []


def test_writer_when_its_process_is_gone_then_the_parent_is_told(ledger: Ledger) -> None:
    writer = ledger.backtests.decision_sink("paper")
    assert isinstance(writer, DecisionWriter)
    writer._process.kill()
    writer._process.wait()
    with pytest.raises(DecisionWriterFailed, match="ended"):
        writer.flush()
    writer.close()


def test_backtest_when_streamed_through_the_writer_then_memory_holds_no_decision(
    ledger: Ledger, frames: dict[str, pd.DataFrame]
) -> None:
    writer = ledger.backtests.decision_sink("paper")
    try:
        streamed: MemoryLedger = run_backtest(frames, writer)
        assert streamed.orders.decisions("paper") == []
        streamed.records("paper")
        assert writer.written == CANDLES * len(frames)  # type: ignore[attr-defined]
        # Its own peak, not the pages this process had when it forked (VmHWM, after exec).
        peak = writer.peak_mb  # type: ignore[attr-defined]
        assert peak is not None
        assert 10 < peak < resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        writer.close()


def test_writer_when_behind_then_the_loop_prepares_the_holds_and_the_same_rows_are_stored(
    ledger: Ledger, frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    # Always behind: every chunk of holds is prepared in this process, none in the child.
    writer = ledger.backtests.decision_sink("paper")
    assert isinstance(writer, DecisionWriter)
    writer._sender.behind = lambda: True  # type: ignore[method-assign]
    try:
        run_backtest(frames, writer)
        assert writer.written == CANDLES * len(frames)
    finally:
        writer.close()
    apart = open_ledger(f"sqlite:///{tmp_path / 'in_process.db'}")
    stream = apart.backtests.decision_sink("paper", in_process=True)
    run_backtest(frames, stream)
    stream.close()  # what is left of its last chunk

    def stored(where: Ledger) -> list[object]:
        return sorted(where.orders.decisions("paper"), key=lambda d: d.decision_id)

    prepared_here, made_apart = stored(ledger), stored(apart)
    assert len(prepared_here) == CANDLES * len(frames)
    assert sum(d.action == "HOLD" for d in prepared_here) > CANDLES  # mostly holds
    assert prepared_here == made_apart


def test_writer_process_when_started_then_it_loads_neither_pandas_nor_pandera() -> None:
    # What it imports to serve (the child's boot and serve): pandas and pandera would add
    # about 100 MB to a process that only decides holds and inserts rows.
    code = (
        "import sys; from infra.ledger.decision_writer import boot; "
        "from infra.ledger.database import make_engine; "
        "from infra.ledger.sessions import Sessions; "
        "print(sorted({'pandas', 'pandera'} & set(sys.modules)))"
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
