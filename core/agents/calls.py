"""One call to an LLM agent, as the audit ledger keeps it, and how a call can end."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class CallOutcome(StrEnum):
    """How a call ended. Anything but OK (and CACHED) is an abstention with this cause."""

    OK = "ok"
    CACHED = "cached"  # answered from the replay cache: no provider call was made
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"  # 429 still, after the retries the deadline allowed
    SERVER_ERROR = "server_error"  # 5xx still, after the retries
    UNAVAILABLE = "unavailable"  # connection refused, DNS, TLS: the provider is down
    REJECTED = "rejected"  # 4xx other than 429: a bad key, an unknown model
    REFUSAL = "refusal"  # the model refused (a refusal message or content filter)
    TRUNCATED = "truncated"  # finish_reason=length: the answer was cut off
    INVALID = "invalid"  # not JSON, or JSON that breaks the answer's schema
    CACHE_MISS = "cache_miss"  # strict replay: no cached answer for this prompt
    BUDGET_EXCEEDED = "budget_exceeded"  # not sent: the round's worst case did not fit

    @property
    def answered(self) -> bool:
        return self in (CallOutcome.OK, CallOutcome.CACHED)


@dataclass(frozen=True, slots=True)
class ChatReply:
    """What the transport brings back: the raw answer, or why there is none."""

    outcome: CallOutcome
    text: str  # the answer's content as sent (empty when none)
    finish_reason: str
    tokens_in: int
    tokens_out: int
    latency_ms: float
    attempts: int = 1
    error: str = ""  # the provider's or the transport's message, when not OK


@dataclass(frozen=True, slots=True)
class AgentCall:
    """One audit row: every call an agent makes, answered or not, priced and timed."""

    agent: str
    round: int  # 0: the opening argument; 1..n: the debate's rebuttals
    model: str
    endpoint: str  # host of the base URL ("offline" never calls)
    template: str
    template_version: str
    prompt_hash: str
    prompt: str
    response: str
    vote: dict[str, object] | None  # the parsed vote, when the answer validated
    outcome: CallOutcome
    error: str  # the validation error or the transport's, when not OK
    tokens_in: int
    tokens_out: int
    latency_ms: float
    cost: Decimal
    finish_reason: str
    called_at: datetime


@dataclass
class AgentUsage:
    """What calls cost (a decision's, a run's): calls by outcome, tokens, and money in the
    configured unit. An abstention is a call that brought no answer."""

    outcomes: Counter[str] = field(default_factory=Counter)
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal(0)

    @classmethod
    def of(cls, calls: Iterable[AgentCall]) -> AgentUsage:
        out = cls()
        for c in calls:
            out.outcomes[c.outcome.value] += 1
            out.tokens_in += c.tokens_in
            out.tokens_out += c.tokens_out
            out.cost += c.cost
        return out

    @property
    def calls(self) -> int:
        return sum(self.outcomes.values())

    @property
    def abstentions(self) -> int:
        return sum(n for k, n in self.outcomes.items() if not CallOutcome(k).answered)
