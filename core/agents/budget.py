"""Token and cost budgets for LLM calls, per decision and per UTC day: a call is made only if
its worst case fits (the prompt's estimated tokens plus the most the answer may use), so a
budget is never overrun by the call that crosses it. Pure: the day's spend so far comes in."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from decimal import Decimal

_THOUSAND = Decimal(1000)


@dataclass(frozen=True, slots=True)
class Prices:
    input_per_1k: Decimal = Decimal(0)
    output_per_1k: Decimal = Decimal(0)

    def cost(self, tokens_in: int, tokens_out: int) -> Decimal:
        return (tokens_in * self.input_per_1k + tokens_out * self.output_per_1k) / _THOUSAND


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """None: no limit of that kind."""

    decision_tokens: int | None = None
    decision_cost: Decimal | None = None
    day_tokens: int | None = None
    day_cost: Decimal | None = None


@dataclass(slots=True)
class Spend:
    tokens: int = 0
    cost: Decimal = Decimal(0)

    def add(self, tokens: int, cost: Decimal) -> None:
        self.tokens += tokens
        self.cost += cost


BUDGET_EXCEEDED = "BUDGET_EXCEEDED"


_MESSAGE_OVERHEAD = 16  # the chat format's tokens around two messages


def estimate_tokens(text: str) -> int:
    """An upper bound of a prompt's tokens: a byte-level BPE tokenizer never makes more than
    one token of a byte (the real count of a brief is about a third of this)."""
    return len(text.encode("utf-8")) + _MESSAGE_OVERHEAD


@dataclass
class Budget:
    """The day's spend and each decision's, in one place: symbols decided in parallel draw on
    the same day. `reserve` before a call, `settle` with what it really used."""

    limits: BudgetLimits
    prices: Prices
    max_output_tokens: int
    day: Spend = field(default_factory=Spend)
    decisions: dict[Hashable, Spend] = field(default_factory=dict)

    def reserve(self, decision: Hashable, prompt: str) -> tuple[int, Decimal] | str:
        """The reservation (tokens, cost) when the call's worst case fits every budget, else
        which budget it would exceed (nothing is reserved then)."""
        tokens_in = estimate_tokens(prompt)
        tokens = tokens_in + self.max_output_tokens
        cost = self.prices.cost(tokens_in, self.max_output_tokens)
        spent = self.decisions.setdefault(decision, Spend())
        refusal = self._exceeds(spent, self.day, tokens, cost)
        if refusal:
            return refusal
        spent.add(tokens, cost)
        self.day.add(tokens, cost)
        return tokens, cost

    def settle(
        self, decision: Hashable, reserved: tuple[int, Decimal], tokens_in: int, tokens_out: int
    ) -> Decimal:
        """Replace a reservation with the call's real use; returns the call's cost."""
        cost = self.prices.cost(tokens_in, tokens_out)
        delta_tokens, delta_cost = tokens_in + tokens_out - reserved[0], cost - reserved[1]
        self.decisions[decision].add(delta_tokens, delta_cost)
        self.day.add(delta_tokens, delta_cost)
        return cost

    def charge_worst_case(
        self, decision: Hashable, reserved: tuple[int, Decimal], attempts: int
    ) -> Decimal:
        """A call whose use is unknown (no answer, or none reported) counts its worst case once
        per request sent (the provider may bill each); returns that cost."""
        extra = max(0, attempts - 1)
        self.decisions[decision].add(reserved[0] * extra, reserved[1] * extra)
        self.day.add(reserved[0] * extra, reserved[1] * extra)
        return reserved[1] * max(1, attempts)

    def _exceeds(self, spent: Spend, day: Spend, tokens: int, cost: Decimal) -> str:
        lim = self.limits
        checks = (
            ("decision tokens", lim.decision_tokens, spent.tokens + tokens),
            ("decision cost", lim.decision_cost, spent.cost + cost),
            ("day tokens", lim.day_tokens, day.tokens + tokens),
            ("day cost", lim.day_cost, day.cost + cost),
        )
        for name, limit, would in checks:
            if limit is not None and would > limit:
                return f"{name}: {would} would exceed the limit {limit}"
        return ""
