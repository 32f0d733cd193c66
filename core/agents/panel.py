"""A panel hands the consensus one final vote per agent for each symbol-decision.

The offline panel asks the rule agents; the LLM panel (services.debate) runs a debate through a
chat model. Both answer every symbol of a candle time in one call, so a panel may work on the
symbols in parallel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from core.agents.base import Agent, AgentContext, InvalidVote, Vote
from core.agents.calls import AgentCall
from core.types import DecisionId


@dataclass(frozen=True, slots=True)
class Deliberation:
    """What a panel concluded for one symbol-decision: each agent's final vote, every call that
    led to it (none offline), and the budget that stopped the debate, if one did."""

    votes: tuple[Vote, ...]
    calls: tuple[AgentCall, ...] = ()
    budget_exceeded: str = ""

    @property
    def all_abstained(self) -> bool:
        for vote in self.votes:  # a loop: every decision of a backtest asks
            if not vote.abstained:
                return False
        return bool(self.votes)


@dataclass(frozen=True, slots=True)
class PanelRequest:
    decision_id: DecisionId
    context: AgentContext


class Panel(Protocol):
    name: str  # "offline", or the model and endpoint of an LLM panel

    @property
    def settings(self) -> Mapping[str, object]:
        """What replaying its decisions needs to rebuild it (JSON values)."""
        ...

    def deliberate(
        self, requests: Sequence[PanelRequest], now: datetime
    ) -> Mapping[DecisionId, Deliberation]: ...


def collect_votes(agents: Sequence[Agent], context: AgentContext) -> tuple[Vote, ...]:
    votes = []
    for agent in agents:
        try:
            votes.append(agent.vote(context))
        except (InvalidVote, KeyError, ValueError) as exc:
            # A broken agent abstains loudly; it never blocks or decides the trade.
            votes.append(Vote.abstain(agent.name, "agent_error", str(exc)))
    return tuple(votes)


@dataclass(frozen=True)
class RulePanel:
    """The deterministic offline backend: the rule agents, no calls, nothing to pay."""

    agents: Sequence[Agent]
    name: str = "offline"

    @property
    def settings(self) -> Mapping[str, object]:
        return {}

    @property
    def features_read(self) -> frozenset[str] | None:
        """The candle features its agents' votes read (each agent's `reads`); None when an
        agent does not say, so all of them may be read."""
        reads = [getattr(agent, "reads", None) for agent in self.agents]
        if not reads or any(r is None for r in reads):
            return None
        return frozenset(name for r in reads for name in r)  # type: ignore[union-attr]

    def deliberate(
        self, requests: Sequence[PanelRequest], now: datetime
    ) -> dict[DecisionId, Deliberation]:
        return {
            r.decision_id: Deliberation(collect_votes(self.agents, r.context)) for r in requests
        }
