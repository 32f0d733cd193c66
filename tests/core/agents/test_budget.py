"""The LLM budget: a call is reserved only when its worst case fits every limit, so no sequence
of calls ever ends above a limit."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from core.agents.budget import Budget, BudgetLimits, Prices, Spend, estimate_tokens

PRICES = Prices(Decimal("0.15"), Decimal("0.60"))


def test_reserve_when_worst_case_fits_then_reserved_and_settled_to_real_use() -> None:
    budget = Budget(BudgetLimits(decision_tokens=1000), PRICES, max_output_tokens=100)
    reserved = budget.reserve("d1", "x" * 300)
    assert reserved == (316 + 100, PRICES.cost(316, 100))  # a token per byte at most
    cost = budget.settle("d1", reserved, tokens_in=80, tokens_out=20)
    assert cost == Decimal("0.024")
    assert (budget.decisions["d1"].tokens, budget.day.tokens) == (100, 100)


def test_reserve_when_day_already_spent_then_refused_naming_the_budget() -> None:
    budget = Budget(BudgetLimits(day_cost=Decimal(1)), PRICES, 100, day=Spend(0, Decimal("0.99")))
    refusal = budget.reserve("d1", "x" * 300)
    assert isinstance(refusal, str)
    assert refusal.startswith("day cost:")
    assert budget.day.cost == Decimal("0.99")  # nothing reserved


def test_reserve_when_decisions_share_the_day_then_each_has_its_own_decision_budget() -> None:
    budget = Budget(BudgetLimits(decision_tokens=500), PRICES, 100)
    assert not isinstance(budget.reserve("a", "x" * 300), str)
    assert not isinstance(budget.reserve("b", "x" * 300), str)
    assert isinstance(budget.reserve("a", "x" * 300), str)


@given(
    st.lists(
        st.tuples(st.integers(0, 3000), st.integers(0, 1000), st.integers(0, 400)),
        max_size=30,
    ),
    st.integers(200, 20_000),
    st.integers(200, 200_000),
)
def test_budget_when_any_sequence_of_calls_then_never_ends_above_a_limit(
    calls: list[tuple[int, int, int]], per_decision: int, per_day: int
) -> None:
    """Real use never exceeds the reserved worst case (tokens_in within the estimate, output
    within max_output_tokens), so settled spend stays within every limit."""
    limits = BudgetLimits(decision_tokens=per_decision, day_tokens=per_day)
    budget = Budget(limits, PRICES, max_output_tokens=400)
    for chars, _, out in calls:
        prompt = "x" * chars
        reserved = budget.reserve("d", prompt)
        if isinstance(reserved, str):
            continue
        budget.settle("d", reserved, estimate_tokens(prompt), min(out, 400))
    assert budget.decisions.get("d", Spend()).tokens <= per_decision
    assert budget.day.tokens <= per_day


def test_estimate_when_real_brief_then_above_a_byte_level_token_count() -> None:
    """Multi-byte text and digits: one token per byte is the most a byte-level BPE makes."""
    text = '{"rsi_14":0.4312,"corwin_schultz_24":0.000123,"note":"ünïcödé ✓"}'
    assert estimate_tokens(text) >= len(text.encode("utf-8"))


def test_charge_worst_case_when_attempts_unknown_then_each_request_counts() -> None:
    budget = Budget(BudgetLimits(), PRICES, 100)
    reserved = budget.reserve("d", "x" * 84)
    assert not isinstance(reserved, str)
    cost = budget.charge_worst_case("d", reserved, attempts=3)
    assert cost == reserved[1] * 3
    assert budget.day.tokens == reserved[0] * 3
