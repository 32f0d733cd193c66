"""The agent interface: the offline rule agents implement it now, LLM agents later."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from core.types import Action, Symbol


class InvalidVote(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class AgentContext:
    symbol: Symbol
    features: Mapping[str, float]
    model_probability: float  # P(up beyond fees over the label horizon)


@dataclass(frozen=True, slots=True)
class Vote:
    agent: str
    action: Action
    confidence: float
    reason: str

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise InvalidVote(f"{self.agent}: confidence {self.confidence!r} outside [0, 1]")
        if not self.reason or "\n" in self.reason:
            raise InvalidVote(f"{self.agent}: reason must be one non-empty line")


class Agent(Protocol):
    name: str

    def vote(self, context: AgentContext) -> Vote: ...
