"""One decision with its LLM calls, read back from a real ledger (SQLite and PostgreSQL): the
record, every call in round order, and what they came to. The builders here make a decision
through core.decision.decide, as the decision flow does; the route and CLI tests share them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from core.agents.base import Vote
from core.agents.calls import AgentCall, AgentUsage, CallOutcome
from core.agents.panel import Deliberation
from core.consensus import ConsensusConfig
from core.decision import Decision, DecisionInput, Sizing, decide
from core.models.policy import PolicyConfig
from core.risk.limits import RiskLimits, RiskState
from core.types import Action, Symbol
from infra.ledger.ledger import Ledger
from services.decisions import decision_with_calls

BTC = Symbol("BTC/USDT")
T = datetime(2024, 2, 3, 9, tzinfo=UTC)  # open of the candle just closed
DECISION_ID = "paper:BTC/USDT:1h:1706950800"
DECIDED = T + timedelta(hours=1, seconds=5)
LIMITS = RiskLimits(
    whitelist=(BTC,),
    max_order_notional=Decimal(1500),
    max_position_notional=Decimal(3000),
    max_total_exposure=Decimal(5000),
    max_daily_loss=Decimal(300),
)
# Brackets and newlines, as real prompts and model answers have: shown as text, never markup.
BULL_PROMPT = "You are Bull.\n[bold]Features[/bold]: rsi_14=61.2, sma[20] below close\nAnswer JSON."
BULL_ANSWER = '{"action": "BUY", "confidence": 0.7, "reasons": ["rsi rising", "above sma[20]"]}'


def call(
    agent: str,
    round_: int,
    outcome: CallOutcome = CallOutcome.OK,
    *,
    vote: dict[str, object] | None = None,
    tokens: tuple[int, int] = (0, 0),
    cost: str = "0",
    error: str = "",
    prompt: str = "",
    response: str = "",
    latency_ms: float = 0.0,
) -> AgentCall:
    return AgentCall(
        agent=agent,
        round=round_,
        model="gpt-test-mini",
        endpoint="127.0.0.1",
        template=f"{agent}-{'open' if round_ == 0 else 'rebut'}",
        template_version="3",
        prompt_hash=f"{agent}{round_}".ljust(64, "0"),
        prompt=prompt or f"prompt of {agent}, round {round_}",
        response=response,
        vote=vote,
        outcome=outcome,
        error=error,
        tokens_in=tokens[0],
        tokens_out=tokens[1],
        latency_ms=latency_ms,
        cost=Decimal(cost),
        finish_reason="stop" if outcome.answered else "",
        called_at=T + timedelta(hours=1, seconds=1 + round_),
    )


def debate_calls() -> tuple[AgentCall, ...]:
    """A two-round debate: Bull answers then is replayed from the cache; Bear times out, then
    breaks the schema. Given out of order: the ledger hands them back by round, then agent."""
    bull_vote: dict[str, object] = {
        "action": "BUY",
        "confidence": 0.7,
        "horizon": 4,
        "reasons": ["rsi rising", "above sma[20]"],
        "risk_flags": ["thin book"],
    }
    return (
        call("bear", 1, CallOutcome.INVALID, tokens=(140, 25), cost="0.00017",
             error="confidence: Input should be less than or equal to 1",
             response='{"action": "SELL", "confidence": 7}', latency_ms=640.25),
        call("bull", 1, CallOutcome.CACHED, vote=bull_vote, response=BULL_ANSWER),
        call("bull", 0, vote=bull_vote, tokens=(120, 30), cost="0.00015", prompt=BULL_PROMPT,
             response=BULL_ANSWER, latency_ms=812.5),
        call("bear", 0, CallOutcome.TIMEOUT, error="no answer within 20.0s",
             latency_ms=20000.0),
    )  # fmt: skip


def final_votes() -> tuple[Vote, ...]:
    return (
        Vote("bull", Action.BUY, 0.7, "rsi rising", horizon=4,
             reasons=("rsi rising", "above sma[20]"), risk_flags=("thin book",)),
        Vote.abstain("bear", "invalid", "confidence: Input should be less than or equal to 1"),
    )  # fmt: skip


def llm_decision(
    calls: tuple[AgentCall, ...] | None = None,
    limits: RiskLimits = LIMITS,
    candle_time: datetime = T,
) -> Decision:
    """A BUY the policy enters on a significant edge, through decide() with the panel's votes
    and calls, and the provenance the decision flow records."""
    inp = DecisionInput(
        "paper", BTC, "1h", candle_time, Decimal("43000.5"),
        {"trend_regime": 1.0, "vol_regime_pct": 0.4, "book_imbalance_top5": 0.25},
        0.62, "tradeflow-ensemble", "3", "fs-v7", 0.004, True,
    )  # fmt: skip
    state = RiskState(cash=Decimal(10_000), positions={}, prices={BTC: Decimal("43000.5")})
    deliberation = Deliberation(final_votes(), debate_calls() if calls is None else calls)
    cfg = ConsensusConfig(policy=PolicyConfig(horizon=4))
    decision = decide(inp, deliberation, cfg, Sizing(Decimal(1000)), state, limits,
                      DECIDED + (candle_time - T))  # fmt: skip
    return replace(decision, provenance={"seed": 7, "panel": "gpt-test-mini@127.0.0.1"})


def record(ledger: Ledger, decision: Decision) -> str:
    assert ledger.orders.record_decision(decision, "paper")
    return decision.decision_id


def in_ledger_order(calls: tuple[AgentCall, ...]) -> list[AgentCall]:
    return sorted(calls, key=lambda c: (c.round, c.agent))


# -- tests ----------------------------------------------------------------------------------
def test_decision_with_calls_when_recorded_with_calls_then_record_calls_by_round_and_totals(
    ledger: Ledger,
) -> None:
    decision = llm_decision()
    record(ledger, decision)
    record(ledger, llm_decision(candle_time=T + timedelta(hours=1)))  # the next candle's
    view = decision_with_calls(ledger, DECISION_ID)
    assert view is not None
    assert view.decision == ledger.orders.decision(DECISION_ID)
    assert (view.decision.action, view.decision.regime) == (Action.BUY, "trend_up")
    assert list(view.calls) == in_ledger_order(decision.calls)  # none of the next candle's
    assert totals(view.totals) == (4, 2, 260, 55, Decimal("0.00032"))


def test_decision_with_calls_when_decided_offline_then_no_calls_and_zero_totals(
    ledger: Ledger,
) -> None:
    record(ledger, llm_decision(calls=()))
    view = decision_with_calls(ledger, DECISION_ID)
    assert view is not None
    assert view.calls == ()
    assert totals(view.totals) == (0, 0, 0, 0, Decimal(0))


def test_decision_with_calls_when_id_unknown_then_none(ledger: Ledger) -> None:
    record(ledger, llm_decision())
    assert decision_with_calls(ledger, DECISION_ID.replace("BTC", "ETH")) is None
    assert decision_with_calls(ledger, DECISION_ID + "0") is None


def test_decision_with_calls_when_id_not_printable_then_none_never_a_database_error(
    ledger: Ledger,
) -> None:
    """PostgreSQL refuses a NUL in a query's text outright (a URL's %00 brings one)."""
    record(ledger, llm_decision())
    assert decision_with_calls(ledger, DECISION_ID + "\x00") is None
    assert decision_with_calls(ledger, "") is None


def totals(use: AgentUsage) -> tuple[int, int, int, int, Decimal]:
    return (use.calls, use.abstentions, use.tokens_in, use.tokens_out, use.cost)


def test_usage_of_when_calls_cached_or_failed_then_only_failures_are_abstentions() -> None:
    calls = (
        call("bull", 0, CallOutcome.CACHED),
        call("bear", 0, CallOutcome.RATE_LIMITED, tokens=(10, 0), cost="0.1"),
        call("bull", 1, tokens=(5, 7), cost="0.25"),
    )
    assert totals(AgentUsage.of(calls)) == (3, 1, 15, 7, Decimal("0.35"))
