"""Backtest against paper: a period traded on paper (the live path, candle by candle, on the SQL
ledger) re-run through the backtest engine, and the differences named trade by trade; and the
comparison itself on hand-built records, one cause at a time."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest

from core.agents.base import Vote
from core.orders import Fill, Order, OrderStatus, client_order_id_for, decision_id_for
from core.records import DecisionRecord
from core.risk.limits import Denial, DenialCode
from core.types import Action, Side, Symbol
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from infra.ledger.ledger import Ledger
from infra.ledger.memory import MemoryLedger
from services.backtest.compose import BacktestAlerts
from services.backtest.diff import (
    Cause,
    DiffKind,
    ModelUse,
    RunRecords,
    TradeDiff,
    backtest_diff,
    choose_version,
    diff_notes,
    diff_runs,
    models_used,
)
from services.backtest.engine import BacktestWindow
from services.backtest.session import BacktestParts
from services.decide.batch import FEATURE_WINDOW
from tests.services.backtest.test_identity import AGENTS, RsiModel, _config, run_live
from tests.services.decide.fakes import D

CANDLES = 72  # three days of 1h candles: enough to trade, short enough to run four times
PAPER = SimulationConfig(liquidity=D("0.00001"), latency_candles=1)  # late, partial fills


# -- a paper period and its re-run --------------------------------------------------------
@pytest.fixture(scope="module")
def frames(btc_1h: pd.DataFrame, eth_1h: pd.DataFrame) -> dict[str, pd.DataFrame]:
    rows = FEATURE_WINDOW + CANDLES
    return {"BTC/USDT": btc_1h.head(rows), "ETH/USDT": eth_1h.head(rows)}


def window_of(frames: dict[str, pd.DataFrame]) -> BacktestWindow:
    opens = frames["BTC/USDT"]["open_time"]
    start = opens.iloc[FEATURE_WINDOW].to_pydatetime()
    return BacktestWindow(start, opens.iloc[-1].to_pydatetime() + timedelta(hours=1))


def trade_on_paper(ledger: Ledger, frames: dict[str, pd.DataFrame]) -> None:
    """As the hourly schedule would, on a paper exchange with latency and partial fills."""
    run_live(ledger, frames, PAPER, CANDLES)


def rerun(simulation: SimulationConfig) -> BacktestParts:
    """What the CLI builds with compose.parts: its own account, a fresh memory ledger."""
    return BacktestParts(
        scratch=MemoryLedger(),
        exchange=SimulatedBroker(simulation),
        model=RsiModel(),
        panel=AGENTS,
        cfg=replace(_config(), account="bt-diff"),
        alerts=BacktestAlerts(),
        starting_cash=D(10000),
    )


def reader(ledger: Ledger):  # type: ignore[no-untyped-def]
    cfg = _config()
    return lambda symbol: ledger.candles.load(cfg.exchange, symbol, cfg.timeframe)


def cut_while_filling(ledger: Ledger, window: BacktestWindow) -> tuple[BacktestWindow, Order]:
    """The window up to just after the first fill of paper's last order that filled in
    several: that order is still filling when the window ends."""
    fills = ledger.fills.history("paper")
    split = Counter(f.client_order_id for f in fills)
    orders = [o for o in ledger.orders.find("paper") if split[o.client_order_id] > 1]
    last = orders[-1]
    first = min(f.filled_at for f in fills if f.client_order_id == last.client_order_id)
    return BacktestWindow(window.start, first + timedelta(hours=1)), last


def test_backtest_diff_when_paper_filled_late_and_in_parts_then_timing_and_quantity_named(
    ledger: Ledger, frames: dict[str, pd.DataFrame]
) -> None:
    # Arrange
    trade_on_paper(ledger, frames)
    window, filling = cut_while_filling(ledger, window_of(frames))
    # Act: the backtest fills at once and whole
    report = backtest_diff(ledger, reader(ledger), rerun(SimulationConfig()), "paper", window)
    # Assert
    # The policy's exits depend on the holding (its age, whether the entry has filled), so a
    # fill a candle late moves later decisions too: the counts may differ, never unexplained.
    assert min(report.paper_trades, report.backtest_trades) >= 4, "the window should trade"
    assert report.backtest_account == "bt-diff"
    assert [(m.name, m.version) for m in report.paper_models] == [("rsi", "1")]
    assert all(d.causes for d in report.diffs), "every difference names a cause"
    timing = [d for d in report.diffs if d.kind is DiffKind.TIMING]
    assert len(timing) >= 4
    assert all(Cause.FILL_LATENCY in d.cause_names for d in timing)
    assert {(d.paper.latency, d.backtest.latency) for d in timing} == {(1, 0)}  # type: ignore[union-attr]
    assert any(Cause.PARTIAL_FILL in d.cause_names for d in timing), "filled whole, but later"
    at_cut = [
        d
        for d in report.diffs
        if d.kind is DiffKind.QUANTITY
        and (d.symbol, d.candle_time + timedelta(hours=1)) == (filling.symbol, filling.market_time)
    ]
    assert len(at_cut) == 1, "the order still filling at the window's end is named"
    quantity = at_cut[0]
    assert Cause.PARTIAL_FILL in quantity.cause_names
    assert quantity.paper is not None
    assert quantity.backtest is not None
    assert quantity.paper.filled < quantity.paper.ordered  # cut while filling
    assert report.identical == 0


def test_backtest_diff_when_simulated_as_paper_was_then_nothing_differs(
    ledger: Ledger, frames: dict[str, pd.DataFrame]
) -> None:
    # Arrange
    trade_on_paper(ledger, frames)
    # Act
    report = backtest_diff(ledger, reader(ledger), rerun(PAPER), "paper", window_of(frames))
    # Assert
    assert report.diffs == ()
    assert report.paper_trades == report.backtest_trades == report.identical >= 4
    assert report.notes == ()


# -- the comparison, on hand-built records ------------------------------------------------
T0 = datetime(2024, 3, 1, 10, tzinfo=UTC)
H = timedelta(hours=1)
BTC = Symbol("BTC/USDT")
VOTES = (Vote("bull", Action.BUY, 0.8, "rsi low"), Vote("llm", Action.BUY, 0.6, "looks cheap"))


def decided(
    account: str,
    action: Action = Action.BUY,
    approved: bool | None = True,
    **changes: object,
) -> DecisionRecord:
    did = decision_id_for(account, BTC, "1h", T0)
    record = DecisionRecord(
        decision_id=did,
        account=account,
        symbol=BTC,
        timeframe="1h",
        candle_time=T0,
        price=D(40000),
        feature_set_version="fs-test",
        model_name="rsi",
        model_version="1",
        probability=0.7,
        votes=VOTES,
        order_book_features=None,
        action=action,
        score=0.4,
        consensus_reason="model and agents agree",
        risk_approved=approved,
        denials=(),
        client_order_id=client_order_id_for(did) if approved else None,
        decided_at=T0 + H,
    )
    return replace(record, **changes)  # type: ignore[arg-type]


def ordered(decision: DecisionRecord, side: Side = Side.BUY, qty: str = "0.025") -> Order:
    return Order(
        client_order_id=client_order_id_for(decision.decision_id),
        decision_id=decision.decision_id,
        symbol=decision.symbol,
        side=side,
        quantity=D(qty),
        created_at=T0 + H,
        market_time=T0 + H,
        status=OrderStatus.FILLED,
    )


def filled(order: Order, *fills: tuple[int, str, str]) -> list[Fill]:
    """(candles after the decided candle closed, quantity, price) per fill."""
    return [
        Fill(
            order.client_order_id,
            order.symbol,
            order.side,
            D(qty),
            D(price),
            D(0),
            order.market_time + n * H,
            f"{order.client_order_id}-{i}",
        )
        for i, (n, qty, price) in enumerate(fills, 1)
    ]


Run = tuple[list[DecisionRecord], list[Order], list[Fill]]


def run(
    account: str, decision: DecisionRecord | None = None, *fills: tuple[int, str, str], **o: str
) -> Run:
    decision = decision or decided(account)
    if decision.client_order_id is None:
        return [decision], [], []
    side = Side.SELL if decision.action is Action.SELL else Side.BUY
    order = ordered(decision, side, **o)
    return [decision], [order], filled(order, *(fills or ((0, o.get("qty", "0.025"), "40020"),)))


def compare(paper: Run, backtest: Run) -> list[TradeDiff]:
    return diff_runs(*paper, *backtest, "1h")


def only(diffs: list[TradeDiff]) -> TradeDiff:
    assert len(diffs) == 1, diffs
    return diffs[0]


def test_diff_runs_when_both_traded_alike_then_nothing_differs() -> None:
    assert compare(run("paper"), run("bt-1")) == []


def test_diff_runs_when_paper_filled_a_candle_later_then_timing_and_price_from_fill_latency() -> (
    None
):
    paper = run("paper", None, (1, "0.025", "40100"))
    diffs = compare(paper, run("bt-1"))
    assert [d.kind for d in diffs] == [DiffKind.TIMING, DiffKind.PRICE]
    timing, price = diffs
    assert timing.causes == ("fill latency: paper first filled 1 candle(s) after its candle "
                             "closed, the backtest 0",)  # fmt: skip
    assert price.cause_names == {Cause.FILL_LATENCY}


def test_diff_runs_when_paper_filled_in_parts_then_quantity_from_partial_fill() -> None:
    paper = run("paper", None, (0, "0.01", "40020"), (1, "0.01", "40020"))
    diff = only([d for d in compare(paper, run("bt-1")) if d.kind is DiffKind.QUANTITY])
    assert diff.causes == (
        "partial fill: paper filled 0.02 of 0.025 in 2 fill(s) before the window's end",
    )
    assert diff.paper is not None
    assert diff.paper.filled == D("0.02")


def test_diff_runs_when_paper_filled_whole_in_parts_then_timing_from_partial_fill() -> None:
    paper = run("paper", None, (0, "0.01", "40020"), (2, "0.015", "40020"))
    diff = only(compare(paper, run("bt-1")))
    assert diff.kind is DiffKind.TIMING
    assert diff.causes == (
        "partial fill: paper filled in 2 fill(s), the last 2 candle(s) after its candle closed; "
        "the backtest in 1, the last 0 after",
    )


def test_diff_runs_when_same_candle_other_price_then_price_from_slippage() -> None:
    paper = run("paper", None, (0, "0.025", "40040"))
    diff = only(compare(paper, run("bt-1")))
    assert diff.kind is DiffKind.PRICE
    assert diff.causes == (
        "slippage: same candle (+0), paper 40040 vs the backtest 40020 (+5.0 bps)",
    )


def test_diff_runs_when_paper_order_never_filled_then_quantity_not_filled() -> None:
    decision = decided("paper")
    order = replace(ordered(decision), status=OrderStatus.CANCELLED)
    diff = only(compare(([decision], [order], []), run("bt-1")))
    assert diff.kind is DiffKind.QUANTITY
    assert diff.causes == ("not filled: paper's order (cancelled) filled nothing in the window",)


def test_diff_runs_when_sells_of_other_sizes_then_quantity_from_position_held() -> None:
    paper = run("paper", decided("paper", Action.SELL), (0, "0.02", "39980"), qty="0.02")
    backtest = run("bt-1", decided("bt-1", Action.SELL), (0, "0.025", "39980"))
    diff = only(compare(paper, backtest))
    assert diff.kind is DiffKind.QUANTITY
    assert diff.cause_names == {Cause.POSITION_HELD}


def test_diff_runs_when_backtest_gate_denied_the_same_action_then_missing_from_risk_state() -> None:
    denials = (Denial(DenialCode.TOTAL_EXPOSURE_EXCEEDS_MAX, "5100 > 5000"),)
    backtest = run("bt-1", decided("bt-1", approved=False, denials=denials))
    diff = only(compare(run("paper"), backtest))
    assert diff.kind is DiffKind.MISSING
    assert diff.backtest is None
    assert diff.causes == (
        "risk state: the backtest's risk gate denied the BUY (TOTAL_EXPOSURE_EXCEEDS_MAX)",
    )


def test_diff_runs_when_paper_used_another_model_version_then_missing_names_the_versions() -> None:
    backtest = run("bt-1", decided("bt-1", Action.HOLD, None, model_version="2", probability=0.5))
    diff = only(compare(run("paper"), backtest))
    assert diff.kind is DiffKind.MISSING
    assert diff.causes[0] == "model version: paper rsi v1 (BUY), the backtest rsi v2 (HOLD)"
    assert Cause.MODEL_INPUT not in diff.cause_names  # another model: its own probability


def test_diff_runs_when_an_agent_answered_otherwise_then_extra_names_the_agent() -> None:
    answer = (VOTES[0], Vote("llm", Action.HOLD, 0.3, "unsure"))
    paper = run("paper", decided("paper", Action.HOLD, None, votes=answer))
    diff = only(compare(paper, run("bt-1")))
    assert diff.kind is DiffKind.EXTRA
    assert diff.causes == ("agent votes: llm: paper HOLD 0.30, the backtest BUY 0.60",)


def test_diff_runs_when_same_model_saw_other_features_then_model_input_with_order_book() -> None:
    paper = run(
        "paper",
        decided("paper", Action.HOLD, None, probability=0.55, order_book_features={"imb": 0.2}),
    )
    diff = only(compare(paper, run("bt-1")))
    assert diff.kind is DiffKind.EXTRA
    assert diff.causes == (
        "model input: same model, probability 0.550 on paper vs 0.700; only paper had "
        "order-book features",
    )


def test_diff_runs_when_sides_differ_then_decision_with_the_cause() -> None:
    backtest = run("bt-1", decided("bt-1", Action.SELL, model_version="2"))
    diff = only(compare(run("paper"), backtest))
    assert diff.kind is DiffKind.DECISION
    assert diff.cause_names == {Cause.MODEL_VERSION}


def test_diff_runs_when_backtest_decided_nothing_there_then_missing_from_no_decision() -> None:
    diff = only(compare(run("paper"), ([], [], [])))
    assert diff.kind is DiffKind.MISSING
    assert diff.cause_names == {Cause.NO_DECISION}


def test_choose_version_when_paper_used_several_then_champion_among_them_else_newest() -> None:
    first = decided("paper", model_version="3")
    later = replace(decided("paper", model_version="4"), candle_time=T0 + H)
    used = models_used([later, first])
    assert [(m.version, m.decisions, m.first) for m in used] == [("3", 1, T0), ("4", 1, T0 + H)]
    assert choose_version(used, champion="3") == "3"
    assert choose_version(used, champion="7") == "4"
    assert choose_version(used, champion=None) == "4"
    assert choose_version(used[:1], champion="4") == "3"
    assert choose_version((), champion="4") is None
    assert isinstance(used[0], ModelUse)


def test_diff_runs_when_kill_switch_order_has_no_decision_then_left_out() -> None:
    paper = run("paper")
    closing = replace(paper[1][0], decision_id=None, client_order_id="ks-1")  # type: ignore[arg-type]
    assert compare((paper[0], [*paper[1], closing], paper[2]), run("bt-1")) == []


def test_trade_side_when_filled_then_average_and_latency() -> None:
    paper = run("paper", None, (2, "0.01", "100"), (3, "0.015", "200"))
    diff = only(compare(paper, ([], [], [])))
    side = diff.paper
    assert side is not None
    assert side.filled == D("0.025")
    assert side.average_price == Decimal("160")
    assert side.latency == 2


def test_diff_notes_when_versions_changed_and_paper_traded_before_then_said() -> None:
    first = decided("paper", model_version="3")
    later = replace(decided("paper", model_version="4"), candle_time=T0 + H)
    sol = replace(decided("paper"), symbol=Symbol("SOL/USDT"))
    paper = RunRecords((first, later, sol), (), ())
    notes = diff_notes(paper, models_used(paper.decisions), ("rsi", "4"), 7, rerun(PAPER))
    assert len(notes) == 3
    assert notes[0].startswith("paper decided with 3 model versions in the window: rsi v3 (1")
    assert "the backtest used v4 throughout" in notes[0]
    assert notes[1].startswith("paper had 7 fill(s) before the window")
    assert notes[2] == "paper decided SOL/USDT, which the backtest does not trade"
