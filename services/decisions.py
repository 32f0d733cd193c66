"""One recorded decision with every LLM call behind it: what the API's
GET /api/v1/decisions/{id} and `tradeflow decision ID` both show."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from core.agents.calls import AgentCall
from core.ports import Ledger
from core.records import DecisionRecord


@dataclass(frozen=True, slots=True)
class CallTotals:
    """What a decision's calls came to; an abstention is a call that brought no answer."""

    calls: int
    abstentions: int
    tokens_in: int
    tokens_out: int
    cost: Decimal


@dataclass(frozen=True, slots=True)
class DecisionView:
    decision: DecisionRecord
    calls: tuple[AgentCall, ...]  # by round, then agent (as the ledger hands them out)
    totals: CallTotals


def totals_of(calls: Sequence[AgentCall]) -> CallTotals:
    return CallTotals(
        calls=len(calls),
        abstentions=sum(1 for c in calls if not c.outcome.answered),
        tokens_in=sum(c.tokens_in for c in calls),
        tokens_out=sum(c.tokens_out for c in calls),
        cost=sum((c.cost for c in calls), Decimal(0)),
    )


def decision_with_calls(ledger: Ledger, decision_id: str) -> DecisionView | None:
    """The decision and its calls, or None when no decision has this id."""
    # Ids are printable text; anything else (a NUL from a URL's %00) is no decision, and is
    # never sent to a database that would refuse it with an error instead of "not found".
    if not decision_id or not decision_id.isprintable():
        return None
    record = ledger.orders.decision(decision_id)
    if record is None:
        return None
    # A decision's calls are written in its transaction, so reading them after it sees all.
    calls = tuple(ledger.agent_calls.for_decision(decision_id))
    return DecisionView(record, calls, totals_of(calls))
