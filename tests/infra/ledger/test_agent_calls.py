"""The LLM calls in the ledger (SQLite and PostgreSQL): written with their decision or not at
all, never twice, summed for the day's budget, and found again by (model, prompt hash)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy.exc import IntegrityError

from core.agents.base import Vote
from core.agents.calls import AgentCall, CallOutcome
from core.consensus import Consensus
from core.types import Action
from infra.ledger.ledger import Ledger
from tests.infra.ledger.test_ledger import T0, make_decision


def call(agent: str = "bull", round_: int = 0, **changes: object) -> AgentCall:
    base = AgentCall(
        agent=agent,
        round=round_,
        model="gpt-test",
        endpoint="127.0.0.1:8000",
        template=f"tradeflow-{agent}",
        template_version="3+1",
        prompt_hash="ab" * 32,
        prompt="[system]\nYou are the Bull\n[user]\nBrief: {}",
        response='{"action":"BUY"}',
        vote={"action": "BUY", "confidence": 0.7, "horizon": 4, "reasons": ["r"],
              "risk_flags": []},
        outcome=CallOutcome.OK,
        error="",
        tokens_in=812,
        tokens_out=64,
        latency_ms=301.5,
        cost=Decimal("0.000160200000000000"),
        finish_reason="stop",
        called_at=T0 + timedelta(hours=1),
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


def with_calls(*calls: AgentCall, hours: int = 0):  # type: ignore[no-untyped-def]
    decision = make_decision(T0 + timedelta(hours=hours), approved=False)
    consensus = Consensus(
        Action.NO_TRADE, 0.0, 0.0, "AGENTS_ABSTAINED", 1.0, {"model": 0.0}, "range"
    )
    votes = (Vote.abstain("bull", "timeout"),)
    prov = {"model": {"name": "m", "version": "1"}}
    return replace(decision, calls=calls, consensus=consensus, votes=votes, provenance=prov)


def test_record_when_decision_has_calls_then_stored_with_it_exactly(ledger: Ledger) -> None:
    decision = with_calls(call("bull"), call("bear", prompt_hash="cd" * 32))
    assert ledger.orders.record_decision(decision, "paper")
    stored = ledger.agent_calls.for_decision(decision.decision_id)
    assert stored == [call("bear", prompt_hash="cd" * 32), call("bull")]
    record = ledger.orders.decision(decision.decision_id)
    assert record is not None
    assert record.action is Action.NO_TRADE
    assert record.votes[0].abstained == "timeout"
    assert (record.regime, record.provenance) == ("range", {"model": {"name": "m", "version": "1"}})


def test_record_when_retried_then_calls_not_stored_twice(ledger: Ledger) -> None:
    decision = with_calls(call("bull"))
    assert ledger.orders.record_decision(decision, "paper")
    assert not ledger.orders.record_decision(decision, "paper")
    assert len(ledger.agent_calls.for_decision(decision.decision_id)) == 1


def test_record_when_a_call_row_is_bad_then_nothing_is_written(ledger: Ledger) -> None:
    decision = with_calls(call("bull"), call("bull"))  # the same turn twice
    with pytest.raises(IntegrityError):
        ledger.orders.record_decision(decision, "paper")
    assert ledger.orders.decision(decision.decision_id) is None
    assert ledger.agent_calls.for_decision(decision.decision_id) == []


def test_spent_since_when_calls_on_two_days_then_only_the_day_asked(ledger: Ledger) -> None:
    ledger.orders.record_decision(with_calls(call(called_at=T0 - timedelta(days=1))), "paper")
    ledger.orders.record_decision(
        with_calls(call("bull"), call("bear", cost=Decimal("0.5")), hours=1), "paper"
    )
    tokens, cost = ledger.agent_calls.spent_since(T0)
    assert tokens == 2 * (812 + 64)
    assert cost == Decimal("0.5001602")
    assert ledger.agent_calls.spent_since(T0 + timedelta(days=3)) == (0, Decimal(0))


def test_cached_when_answered_then_found_and_failures_never_are(ledger: Ledger) -> None:
    ledger.orders.record_decision(
        with_calls(
            call("bull", response="first"),
            call("bear", prompt_hash="ee" * 32, outcome=CallOutcome.TIMEOUT, response=""),
        ),
        "paper",
    )
    found = ledger.agent_calls.cached("gpt-test", "ab" * 32)
    assert found is not None
    assert found.response == "first"
    assert ledger.agent_calls.cached("other-model", "ab" * 32) is None
    assert ledger.agent_calls.cached("gpt-test", "ee" * 32) is None


def test_usage_when_calls_of_an_account_then_counted_by_outcome_with_exact_cost(
    ledger: Ledger,
) -> None:
    ledger.orders.record_decision(
        with_calls(call("bull"), call("bear", outcome=CallOutcome.TIMEOUT, tokens_out=0)), "paper"
    )
    ledger.orders.record_decision(with_calls(call("bull", cost=Decimal("0.3")), hours=1), "paper")
    use = ledger.agent_calls.usage("paper")
    assert dict(use.outcomes) == {"ok": 2, "timeout": 1}
    assert (use.calls, use.tokens_in, use.tokens_out) == (3, 3 * 812, 2 * 64)
    assert use.cost == Decimal("0.3003204")
    assert ledger.agent_calls.usage("paper", since=T0 + timedelta(hours=1)).calls == 1
    assert ledger.agent_calls.usage("other").calls == 0
