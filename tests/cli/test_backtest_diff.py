"""`tradeflow backtest-diff`: a period paper traded (live path, latency of a candle) in the
ledger the settings name, re-run with the version paper used, the differences printed."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from cli import backtest_diff
from cli.backtest_diff import backtest_diff_command, print_diff
from core.clock import FixedClock
from core.orders import OrderStatus
from core.ports import Model
from core.types import Side, Symbol
from infra.alerts import Alerts
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from infra.settings import Settings
from services import bootstrap
from services.backtest import compose
from services.backtest.diff import (
    Cause,
    DiffKind,
    DiffReport,
    FillAt,
    ModelUse,
    TradeDiff,
    TradeSide,
)
from services.backtest.engine import BacktestWindow
from services.decide.batch import FEATURE_WINDOW
from services.decide.live import decide_live
from services.execution import submit_order
from tests.services.backtest.test_identity import RsiModel

CANDLES = 48
runner = CliRunner()


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("backtest-diff")(backtest_diff_command)

    @app.callback()
    def main() -> None:
        """tradeflow, as cli.main registers the command."""

    return app


def trade_on_paper(settings: Settings, btc: pd.DataFrame, eth: pd.DataFrame) -> BacktestWindow:
    """The decision flow's live path on the settings' ledger, a candle at a time, on a paper
    exchange that fills a candle late."""
    ledger = bootstrap.ledger(settings)
    cfg = bootstrap.decision_config(settings)
    frames = {
        "BTC/USDT": btc.head(FEATURE_WINDOW + CANDLES),
        "ETH/USDT": eth.head(FEATURE_WINDOW + CANDLES),
    }
    paper = SimulatedBroker(SimulationConfig(latency_candles=1))
    for symbol, frame in frames.items():
        ledger.candles.upsert(cfg.exchange, symbol, cfg.timeframe, frame.head(FEATURE_WINDOW))
    opens = frames["BTC/USDT"]["open_time"]
    for i in range(FEATURE_WINDOW, FEATURE_WINDOW + CANDLES):
        for symbol, frame in frames.items():
            ledger.candles.upsert(cfg.exchange, symbol, cfg.timeframe, frame.iloc[i : i + 1])
        clock = FixedClock(opens.iloc[i].to_pydatetime() + timedelta(hours=1))
        agents = bootstrap.panel(settings)
        report = decide_live(ledger, paper.name, paper, RsiModel(), agents, cfg, clock, Alerts(()))
        for coid in report.to_send:
            submit_order(ledger, paper, coid, clock)
    start = opens.iloc[FEATURE_WINDOW].to_pydatetime()
    return BacktestWindow(start, opens.iloc[-1].to_pydatetime() + timedelta(hours=1))


def test_backtest_diff_when_paper_filled_late_then_prints_summary_and_fill_latency(
    app_settings,  # type: ignore[no-untyped-def]
    btc_1h: pd.DataFrame,
    eth_1h: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange
    window = trade_on_paper(app_settings(), btc_1h, eth_1h)
    asked: list[str | None] = []

    def model(settings: Settings, version: str | None) -> Model:
        asked.append(version)
        return RsiModel()

    monkeypatch.setattr(compose, "model", model)
    monkeypatch.setattr(backtest_diff, "console", Console(width=240))  # a wide terminal
    args = ["backtest-diff", "--from", f"{window.start:%FT%H:%M}", "--to", f"{window.end:%FT%H:%M}"]
    # Act
    result = runner.invoke(cli(), args, terminal_width=240)
    # Assert
    assert result.exit_code == 0, result.output
    assert asked == ["1"], "the version paper decided with"
    assert (
        f"paper vs backtest, {window.start:%F %H:%M} .. {window.end:%F %H:%M} UTC:" in result.output
    )
    summary = result.output.splitlines()[0]
    counts = re.search(r"(\d+) paper trades, (\d+) backtest trades", summary)
    assert counts is not None
    assert min(int(counts[1]), int(counts[2])) >= 4, "both sides traded the window"
    assert re.search(r"timing \d+", summary), "filled trades filled a candle later"
    assert "fill latency: paper first filled 1 candle(s)" in result.output
    assert "model: paper rsi v1; backtest rsi v1" in result.output
    assert bootstrap.ledger(app_settings()).backtests.recent() == [], "nothing stored"


def test_backtest_diff_when_paper_decided_nothing_then_one_line_and_exit_1(
    app_settings,  # type: ignore[no-untyped-def]
) -> None:
    app_settings()
    result = runner.invoke(cli(), ["backtest-diff", "--from", "2024-01-01", "--to", "2024-01-02"])
    assert result.exit_code == 1
    assert "recorded no 1h decision between 2024-01-01 00:00 and 2024-01-02 00:00 UTC" in (
        result.output.replace("\n", " ")
    )
    assert "Traceback" not in result.output


def test_backtest_diff_when_dates_wrong_then_exit_2(app_settings) -> None:  # type: ignore[no-untyped-def]
    app_settings()
    bad = runner.invoke(cli(), ["backtest-diff", "--from", "yesterday", "--to", "2024-01-02"])
    empty = runner.invoke(cli(), ["backtest-diff", "--from", "2024-01-02", "--to", "2024-01-01"])
    assert (bad.exit_code, empty.exit_code) == (2, 2)
    assert "--from 'yesterday' is not a date" in bad.output
    assert "is empty" in empty.output


T0 = datetime(2024, 3, 1, 10, tzinfo=UTC)


def report_of(diffs: tuple[TradeDiff, ...], notes: tuple[str, ...] = ()) -> DiffReport:
    use = ModelUse("rsi", "3", 48, T0, T0 + timedelta(hours=47))
    return DiffReport(
        account="paper",
        backtest_account="bt-diff-1",
        window=BacktestWindow(T0, T0 + timedelta(days=2)),
        paper_models=(use, ModelUse("rsi", "4", 48, T0, T0 + timedelta(hours=47))),
        backtest_model=("rsi", "4"),
        paper_trades=3,
        backtest_trades=2,
        identical=1,
        diffs=diffs,
        notes=notes,
    )


def rendered(report: DiffReport, limit: int = 200) -> str:
    console = Console(record=True, width=240)
    print_diff(console, report, limit)
    return console.export_text()


def test_print_diff_when_trades_differ_then_summary_table_and_causes() -> None:
    side = TradeSide(
        Side.BUY,
        Decimal("0.025"),
        OrderStatus.FILLED,
        (FillAt(1, Decimal("0.025"), Decimal("40100")),),
    )
    at_once = TradeSide(
        Side.BUY,
        Decimal("0.025"),
        OrderStatus.FILLED,
        (FillAt(0, Decimal("0.025"), Decimal("40020")),),
    )
    late = "fill latency: paper first filled 1 candle(s) after its candle closed, the backtest 0"
    diffs = (
        TradeDiff(Symbol("BTC/USDT"), T0, DiffKind.TIMING, side, at_once, (late,)),
        TradeDiff(
            Symbol("ETH/USDT"),
            T0,
            DiffKind.MISSING,
            side,
            None,
            ("risk state: the backtest's risk gate denied the BUY (TOTAL_EXPOSURE_EXCEEDS_MAX)",),
        ),
    )
    text = rendered(report_of(diffs, ("paper decided with 2 model versions",)))
    assert text.splitlines()[0] == (
        "paper vs backtest, 2024-03-01 10:00 .. 2024-03-03 10:00 UTC: 3 paper trades, "
        "2 backtest trades, 1 identical; differences: missing 1, timing 1"
    )
    assert "model: paper rsi v3, rsi v4; backtest rsi v4" in text
    assert "note: paper decided with 2 model versions" in text
    assert "fill latency: paper first filled 1 candle(s)" in text
    assert "TOTAL_EXPOSURE_EXCEEDS_MAX" in text
    assert "buy 0.025 of 0.025 @ 40100, 1 fill(s) from +1 candle(s)" in text
    assert Cause.FILL_LATENCY.value in text


def test_print_diff_when_more_rows_than_limit_then_says_how_many_more() -> None:
    row = TradeDiff(Symbol("BTC/USDT"), T0, DiffKind.EXTRA, None, None, ("no decision: x",))
    text = rendered(report_of((row, row, row)), limit=2)
    assert "... 1 more (--limit)" in text


def test_print_diff_when_nothing_differs_then_says_every_trade_matched() -> None:
    text = rendered(report_of(()))
    assert "differences: none" in text
    assert "every trade matched" in text
