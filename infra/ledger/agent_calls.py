"""The LLM agents' calls: the audit trail (written with their decision, by Orders), the day's
spend that budgets read, and the replay cache keyed by (model, prompt hash)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import select

from core.agents.calls import AgentCall, AgentUsage, CallOutcome
from infra.ledger.mappers import call_of
from infra.ledger.models import AgentCallRow, DecisionRow
from infra.ledger.sessions import Sessions

_ANSWERED = (CallOutcome.OK.value,)


class AgentCalls:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def spent_since(self, since: datetime) -> tuple[int, Decimal]:
        """Summed here, not by SQL: SQLite's SUM of a NUMERIC column is a float, and money is
        exact (a day holds at most a few thousand calls)."""
        q = select(AgentCallRow.tokens_in + AgentCallRow.tokens_out, AgentCallRow.cost).where(
            AgentCallRow.called_at >= since
        )
        with self._sessions.read() as s:
            rows = s.execute(q).all()
        return sum(int(t) for t, _ in rows), sum((c for _, c in rows), Decimal(0))

    def cached(self, model: str, prompt_hash: str) -> AgentCall | None:
        """The newest answer the provider gave this model for this prompt (a cached answer
        replayed is not itself a source)."""
        q = (
            select(AgentCallRow)
            .where(
                AgentCallRow.model == model,
                AgentCallRow.prompt_hash == prompt_hash,
                AgentCallRow.outcome.in_(_ANSWERED),
            )
            .order_by(AgentCallRow.called_at.desc(), AgentCallRow.id.desc())
            .limit(1)
        )
        with self._sessions.read() as s:
            row = s.scalar(q)
            return None if row is None else call_of(row)

    def usage(self, account: str, since: datetime | None = None) -> AgentUsage:
        """The calls behind an account's decisions on candles from `since`: counted by outcome,
        with their tokens and exact cost."""
        q = (
            select(
                AgentCallRow.outcome,
                AgentCallRow.tokens_in,
                AgentCallRow.tokens_out,
                AgentCallRow.cost,
            )
            .join(DecisionRow, DecisionRow.decision_id == AgentCallRow.decision_id)
            .where(DecisionRow.account == account)
        )
        if since is not None:
            q = q.where(DecisionRow.candle_time >= since)
        out = AgentUsage()
        with self._sessions.read() as s:
            for outcome, tokens_in, tokens_out, cost in s.execute(q):
                out.outcomes[outcome] += 1
                out.tokens_in += tokens_in
                out.tokens_out += tokens_out
                out.cost += cost
        return out

    def for_decision(self, decision_id: str) -> list[AgentCall]:
        q = (
            select(AgentCallRow)
            .where(AgentCallRow.decision_id == decision_id)
            .order_by(AgentCallRow.round, AgentCallRow.agent)
        )
        with self._sessions.read() as s:
            return [call_of(r) for r in s.scalars(q)]
