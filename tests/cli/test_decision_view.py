"""`tradeflow decision ID`: a decision recorded with its LLM calls in the ledger the settings
name (SQLite and PostgreSQL), shown by the real command; prompts in full with --prompts."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cli.decision_view import print_decision
from cli.main import app
from core.risk.limits import RiskLimits
from infra.ledger.ledger import Ledger
from services import bootstrap
from services.decisions import decision_with_calls
from tests.services.test_decisions import (
    BTC,
    BULL_ANSWER,
    BULL_PROMPT,
    DECISION_ID,
    llm_decision,
    record,
)

runner = CliRunner()


@pytest.fixture
def settings_ledger(
    app_settings,  # type: ignore[no-untyped-def]
    ledger: Ledger,
    ledger_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Ledger:
    """The ledger the command's settings name: this test's, on either backend."""
    monkeypatch.setenv("TRADEFLOW_DATABASE_URL", ledger_url)
    bootstrap.forget()
    return ledger


def wide(view_prompts: bool, ledger: Ledger) -> str:
    """What print_decision writes on a console wide enough that no table cell wraps."""
    view = decision_with_calls(ledger, DECISION_ID)
    assert view is not None
    out = io.StringIO()
    print_decision(Console(file=out, width=240), view, view_prompts)
    return out.getvalue()


def test_decision_when_recorded_with_calls_then_decision_calls_and_totals_no_prompts(
    settings_ledger: Ledger,
) -> None:
    decision = llm_decision()
    record(settings_ledger, decision)
    result = runner.invoke(app, ["decision", DECISION_ID])
    assert result.exit_code == 0, result.output
    assert decision.order is not None
    for line in (
        f"decision {DECISION_ID}",
        "action BUY  score ",
        "regime trend_up",
        f"reason: {decision.consensus.reason}",
        "contributions: model +",
        "risk: approved",
        f"order: {decision.order.client_order_id}",
        "4 call(s), 2 without an answer; tokens 260 in, 55 out; cost 0.00032",
    ):
        assert line in result.output
    assert "You are Bull." not in result.output  # prompts only with --prompts


def test_decision_when_prompts_then_each_prompt_and_response_verbatim_brackets_and_all(
    settings_ledger: Ledger,
) -> None:
    record(settings_ledger, llm_decision())
    result = runner.invoke(app, ["decision", DECISION_ID, "--prompts"])
    assert result.exit_code == 0, result.output
    assert BULL_PROMPT in result.output  # "[bold]...[/bold]" and "sma[20]" are text, not markup
    assert result.output.count(BULL_ANSWER) == 2  # answered, then replayed from the cache
    assert '{"action": "SELL", "confidence": 7}' in result.output  # the answer that broke
    assert "prompt of bear, round 0" in result.output


def test_print_decision_when_calls_then_one_row_each_by_round_with_vote_or_error(
    ledger: Ledger,
) -> None:
    record(ledger, llm_decision())
    out = wide(False, ledger)
    rows = [
        [cell.strip() for cell in line.strip("│ ").split("│")]
        for line in out.splitlines()
        if line.startswith("│ ") and line.count("│") == 8  # the calls table's rows
    ]
    assert rows == [
        ["0", "bear", "timeout", "0/0", "20000", "0", "no answer within 20.0s"],
        ["0", "bull", "ok", "120/30", "812", "0.00015",
         "BUY 0.70: rsi rising; above sma[20] [risk flags: thin book]"],
        ["1", "bear", "invalid", "140/25", "640", "0.00017",
         "confidence: Input should be less than or equal to 1"],
        ["1", "bull", "cached", "0/0", "0", "0",
         "BUY 0.70: rsi rising; above sma[20] [risk flags: thin book]"],
    ]  # fmt: skip
    assert "abstained (invalid)" in out  # Bear's final vote


def test_print_decision_when_denied_then_denial_codes_and_no_order(ledger: Ledger) -> None:
    small = RiskLimits(whitelist=(BTC,), max_order_notional=Decimal(10),
                       max_position_notional=Decimal(3000), max_total_exposure=Decimal(5000),
                       max_daily_loss=Decimal(300))  # fmt: skip
    record(ledger, llm_decision(limits=small))
    out = wide(False, ledger)
    assert "risk: denied: ORDER_NOTIONAL_EXCEEDS_MAX: " in out
    assert "order: none" in out


def test_print_decision_when_decided_offline_then_says_no_calls(ledger: Ledger) -> None:
    record(ledger, llm_decision(calls=()))
    out = wide(True, ledger)
    assert "no LLM calls" in out
    assert "LLM calls" not in out.replace("no LLM calls", "")


def test_decision_when_unknown_then_exit_2_with_one_line_naming_the_id(
    settings_ledger: Ledger,
) -> None:
    record(settings_ledger, llm_decision())
    unknown = "paper:ETH/USDT:1h:1706950800"
    result = runner.invoke(app, ["decision", unknown])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"no decision '{unknown}' in this ledger (account 'paper') "
        "(ids read account:symbol:timeframe:candle open in Unix seconds)"
    ]


def test_decision_when_ledger_unreachable_then_exit_1_with_one_line(
    app_settings,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRADEFLOW_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/x")
    bootstrap.forget()
    result = runner.invoke(app, ["decision", DECISION_ID])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: LedgerUnavailable: ")
