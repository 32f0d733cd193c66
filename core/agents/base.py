"""The agent interface: a vote, and what an agent is shown before it votes.

The offline rule agents (core.agents.rules) vote alone; the LLM agents vote through a debate
(services.debate). Either way a panel (core.agents.panel) hands the consensus one final vote per
agent, and an agent that could not vote says why instead of pretending to HOLD.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from core.types import Action, Symbol

if TYPE_CHECKING:
    from core.agents.brief import Brief


class InvalidVote(ValueError):
    pass


@dataclass(frozen=True)
class AgentContext:
    symbol: Symbol
    features: Mapping[str, float]
    model_probability: float  # P(up beyond fees over the label horizon)
    # What an LLM agent reads (the rule agents read the features only): built on first use,
    # as a backtest's rule agents never need it and it costs a sixth of a decision.
    brief_source: Callable[[], Brief] | None = field(default=None, repr=False, compare=False)

    @cached_property
    def brief(self) -> Brief | None:
        return None if self.brief_source is None else self.brief_source()


MAX_REASONS = 3


@dataclass(frozen=True, slots=True)
class Vote:
    agent: str
    action: Action
    confidence: float
    reason: str  # one line: what the agent said, or why it could not vote
    horizon: int = 0  # candles the view is for (0: not given)
    reasons: tuple[str, ...] = ()  # at most three, as the agent gave them
    risk_flags: tuple[str, ...] = ()
    # Why this agent did not vote (a timeout, a refusal, a malformed answer, the budget...):
    # empty when it voted. An abstention weighs nothing in the consensus.
    abstained: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise InvalidVote(f"{self.agent}: confidence {self.confidence!r} outside [0, 1]")
        if not self.reason or "\n" in self.reason:
            raise InvalidVote(f"{self.agent}: reason must be one non-empty line")
        if len(self.reasons) > MAX_REASONS:
            raise InvalidVote(f"{self.agent}: {len(self.reasons)} reasons, at most {MAX_REASONS}")

    @property
    def voted(self) -> bool:
        return not self.abstained

    def as_json(self, full: bool = True) -> dict[str, object]:
        """The vote as plain JSON values (the API's answer). Not `full`: the LLM's fields only
        when set (the ledger's column: a backtest stores a rule vote per agent per candle, and
        empty lists are objects to allocate, encode and collect)."""
        out: dict[str, object] = {
            "agent": self.agent,
            "action": self.action.value,
            "confidence": self.confidence,
            "reason": self.reason,
        }
        if full or self.horizon or self.reasons or self.risk_flags or self.abstained:
            out |= {
                "horizon": self.horizon,
                "reasons": list(self.reasons),
                "risk_flags": list(self.risk_flags),
                "abstained": self.abstained,
            }
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Vote:
        """Back from as_json (votes stored before the LLM fields read with their defaults)."""
        return cls(
            data["agent"],
            Action(data["action"]),
            data["confidence"],
            data["reason"],
            horizon=data.get("horizon", 0),
            reasons=tuple(data.get("reasons", ())),
            risk_flags=tuple(data.get("risk_flags", ())),
            abstained=data.get("abstained", ""),
        )

    @classmethod
    def abstain(cls, agent: str, cause: str, detail: str = "") -> Vote:
        text = f"abstained: {cause}" + (f": {detail}" if detail else "")
        return cls(agent, Action.HOLD, 0.0, " ".join(text.split())[:300], abstained=cause)


class Agent(Protocol):
    name: str

    def vote(self, context: AgentContext) -> Vote: ...
