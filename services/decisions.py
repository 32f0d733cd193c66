"""One recorded decision with every LLM call behind it: what the API's
GET /api/v1/decisions/{id} and `tradeflow decision ID` both show."""

from __future__ import annotations

from dataclasses import dataclass

from core.agents.calls import AgentCall, AgentUsage
from core.ports import Ledger
from core.records import DecisionRecord


@dataclass(frozen=True, slots=True)
class DecisionView:
    decision: DecisionRecord
    calls: tuple[AgentCall, ...]  # by round, then agent (as the ledger hands them out)
    totals: AgentUsage


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
    return DecisionView(record, calls, AgentUsage.of(calls))
