"""The LLM panel through the real openai client against a scripted loopback server: the debate's
rounds, parallel calls, every failure as a recorded abstention, budgets that stop the debate
before a call is made, the replay cache, and the offline fallback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from core.agents.budget import BUDGET_EXCEEDED, BudgetLimits, Prices
from core.agents.calls import AgentCall, CallOutcome
from core.agents.panel import PanelRequest
from core.agents.rules import BearAgent, BullAgent
from core.alerts import Severity
from core.clock import FixedClock
from core.consensus import AGENTS_ABSTAINED, ConsensusConfig, ModelSignal, combine
from core.decision import DecisionInput, agent_context
from core.models.policy import FLAT
from core.risk.limits import RiskState
from core.types import Action, DecisionId, Symbol
from infra.llm.openai_chat import OpenAiChat
from infra.llm.prompts import repo_templates
from services.debate import DebateConfig, LlmPanel, ReplayCacheMiss
from tests.llm_server import (
    LlmServer,
    Reply,
    answer,
    malformed,
    refusal,
    schema_violation,
    slow,
    status,
    truncated,
)

NOW = datetime(2024, 3, 1, 13, tzinfo=UTC)
T = NOW - timedelta(hours=1)
FEATURES = {"ema_ratio_12": 0.01, "macd_hist": 0.001, "rsi_14": 0.55, "trend_regime": 1.0}


class CallLog:
    """The ledger's view the panel reads (spend and cache), kept in memory: the SQL ledger's
    own implementation is tested in tests/infra/ledger/test_agent_calls.py."""

    def __init__(self, spent: tuple[int, Decimal] = (0, Decimal(0))) -> None:
        self.calls: list[AgentCall] = []
        self.decided: dict[str, list[AgentCall]] = {}
        self.spent = spent

    def record(self, decisions: dict[DecisionId, Any]) -> None:
        """As the ledger does when the decisions are recorded."""
        for key, deliberation in decisions.items():
            self.decided[key] = list(deliberation.calls)
            self.calls += deliberation.calls

    def for_decision(self, decision_id: str) -> list[AgentCall]:
        return self.decided.get(decision_id, [])

    def spent_since(self, since: datetime) -> tuple[int, Decimal]:
        return self.spent

    def cached(self, model: str, prompt_hash: str) -> AgentCall | None:
        found = [
            c
            for c in self.calls
            if (c.model, c.prompt_hash, c.outcome) == (model, prompt_hash, CallOutcome.OK)
        ]
        return found[-1] if found else None


class Alerts:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, title: str, body: str, *, severity: Severity = Severity.WARNING) -> bool:
        self.sent.append(f"{title}: {body}")
        return True


def request(symbol: str = "BTC/USDT") -> PanelRequest:
    inp = DecisionInput(
        "paper", Symbol(symbol), "1h", T, Decimal(50_000), FEATURES, 0.6, "m", "1", "fs", 0.002,
        True, {"oof_auc": 0.5612345, "oof_entries": 41.0},
    )  # fmt: skip
    state = RiskState(cash=Decimal(10_000), positions={}, prices={Symbol(symbol): inp.price})
    return PanelRequest(DecisionId(f"paper:{symbol}:1h:1"), agent_context(inp, state, 4))


def agent_of(body: dict[str, Any]) -> str:
    return "bull" if "You are the Bull" in body["messages"][0]["content"] else "bear"


@pytest.fixture
def make_panel(llm_server: LlmServer) -> Iterator[Any]:
    panels: list[LlmPanel] = []

    def make(log: CallLog | None = None, alerts: Alerts | None = None, **cfg: Any) -> LlmPanel:
        chat = OpenAiChat(llm_server.base_url, "test-model", None, timeout_s=0.4,
                          max_output_tokens=200, backoff_s=0.01)  # fmt: skip
        settings = {"rounds": 1, "decision_timeout_s": 3.0, "cache": "off"} | cfg
        panel = LlmPanel(
            chat, repo_templates(), log or CallLog(), DebateConfig(**settings), FixedClock(NOW),
            alerts or Alerts(), (BullAgent(), BearAgent()),
        )  # fmt: skip
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        panel.close()


def test_debate_when_both_answer_then_two_rounds_and_each_sees_the_other(
    llm_server: LlmServer, make_panel: Any
) -> None:
    llm_server.answer_with(
        lambda body: answer("BUY", 0.7) if agent_of(body) == "bull" else answer("SELL", 0.4)
    )
    out = make_panel().deliberate([request()], NOW)[DecisionId("paper:BTC/USDT:1h:1")]
    assert [(c.round, c.agent, c.outcome) for c in out.calls] == [
        (0, "bull", CallOutcome.OK), (0, "bear", CallOutcome.OK),
        (1, "bull", CallOutcome.OK), (1, "bear", CallOutcome.OK),
    ]  # fmt: skip
    assert [(v.agent, v.action, v.confidence) for v in out.votes] == [
        ("bull", Action.BUY, 0.7),
        ("bear", Action.SELL, 0.4),
    ]
    rebuttals = [r for r in llm_server.requests if "Round 1 of 1" in r["messages"][1]["content"]]
    bull_rebuttal = next(r for r in rebuttals if agent_of(r) == "bull")
    assert 'The Bear answered: {"action":"SELL"' in bull_rebuttal["messages"][1]["content"]
    assert all(c.prompt_hash and c.template == f"tradeflow-{c.agent}" for c in out.calls)
    brief = json.loads(out.calls[0].prompt.split("Brief: ")[1].split("\n")[0])
    assert brief["regime"] == "trend_up"
    assert brief["model"]["out_of_sample"] == {"oof_auc": 0.5612, "oof_entries": 41.0}
    assert brief["model"]["significant_out_of_sample"] is True


def test_debate_when_two_symbols_then_calls_run_in_parallel(
    llm_server: LlmServer, make_panel: Any
) -> None:
    llm_server.script(Reply(content=answer().content, delay_s=0.25))
    started = time.monotonic()
    out = make_panel().deliberate([request("BTC/USDT"), request("ETH/USDT")], NOW)
    elapsed = time.monotonic() - started
    assert len(llm_server.requests) == 8  # 2 + 2 x 1 round, per symbol
    assert all(len(d.calls) == 4 for d in out.values())
    assert elapsed < 2 * 0.25 + 0.4, f"{elapsed:.2f} s: the 4 calls of a round ran one by one"


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (malformed(), CallOutcome.INVALID),
        (schema_violation(), CallOutcome.INVALID),
        (refusal(), CallOutcome.REFUSAL),
        (truncated(), CallOutcome.TRUNCATED),
        (slow(1.0), CallOutcome.TIMEOUT),
        (status(500), CallOutcome.SERVER_ERROR),
        (status(401), CallOutcome.REJECTED),
    ],
)
def test_debate_when_every_answer_fails_then_abstentions_with_cause_and_no_trade(
    llm_server: LlmServer, make_panel: Any, reply: Reply, outcome: CallOutcome
) -> None:
    llm_server.script(reply)
    out = make_panel(rounds=0).deliberate([request()], NOW)[DecisionId("paper:BTC/USDT:1h:1")]
    assert {c.outcome for c in out.calls} == {outcome}
    assert all(not v.voted and v.abstained == outcome.value for v in out.votes)
    assert out.all_abstained
    if outcome is CallOutcome.INVALID:
        assert all(c.error and c.vote is None for c in out.calls)
    verdict = combine(ModelSignal(0.6, 0.002, True), out, FLAT, ConsensusConfig())
    assert verdict.action is Action.NO_TRADE
    assert verdict.reason.startswith(AGENTS_ABSTAINED)
    assert outcome.value in verdict.reason


def test_debate_when_rate_limited_once_then_retried_and_answered(
    llm_server: LlmServer, make_panel: Any
) -> None:
    llm_server.script(status(429), answer("BUY", 0.8))
    out = make_panel(rounds=0, parallel=1).deliberate([request()], NOW)
    votes = out[DecisionId("paper:BTC/USDT:1h:1")].votes
    assert [v.action for v in votes] == [Action.BUY, Action.BUY]
    assert len(llm_server.requests) == 3


def test_debate_when_one_round_fails_then_the_last_answer_stands(
    llm_server: LlmServer, make_panel: Any
) -> None:
    llm_server.script(answer("BUY", 0.7), answer("BUY", 0.7), malformed())
    out = make_panel(parallel=1).deliberate([request()], NOW)[DecisionId("paper:BTC/USDT:1h:1")]
    assert [c.outcome for c in out.calls][2:] == [CallOutcome.INVALID, CallOutcome.INVALID]
    assert all(v.voted and v.action is Action.BUY for v in out.votes)


def test_debate_when_decision_budget_fits_only_the_opening_then_no_rebuttal_and_no_trade(
    llm_server: LlmServer, make_panel: Any
) -> None:
    llm_server.script(Reply(content=answer().content, usage=(1500, 200)))
    alerts = Alerts()
    # The opening's worst case fits (2 x (~600 estimated + 200)); once it used 3400 tokens,
    # the rebuttals' worst case does not.
    panel = make_panel(alerts=alerts, limits=BudgetLimits(decision_tokens=4000))
    out = panel.deliberate([request()], NOW)[DecisionId("paper:BTC/USDT:1h:1")]
    assert len(llm_server.requests) == 2, "no call after the budget was found short"
    assert [(c.round, c.outcome) for c in out.calls] == [
        (0, CallOutcome.OK), (0, CallOutcome.OK),
        (1, CallOutcome.BUDGET_EXCEEDED), (1, CallOutcome.BUDGET_EXCEEDED),
    ]  # fmt: skip
    assert all(c.tokens_in == 0 and c.error.startswith("round 1") for c in out.calls[2:])
    assert out.budget_exceeded.startswith("round 1")
    verdict = combine(ModelSignal(0.6, 0.002, True), out, FLAT, ConsensusConfig())
    assert verdict.action is Action.NO_TRADE
    assert verdict.reason.startswith(BUDGET_EXCEEDED)
    assert alerts.sent
    assert "BUDGET" in alerts.sent[0].upper()


def test_debate_when_day_cost_already_spent_then_no_call_at_all(
    llm_server: LlmServer, make_panel: Any
) -> None:
    log = CallLog(spent=(0, Decimal("4.999")))
    panel = make_panel(
        log, limits=BudgetLimits(day_cost=Decimal(5)), prices=Prices(Decimal(1), Decimal(1))
    )
    out = panel.deliberate([request()], NOW)[DecisionId("paper:BTC/USDT:1h:1")]
    assert llm_server.requests == []
    assert {c.outcome for c in out.calls} == {CallOutcome.BUDGET_EXCEEDED}  # recorded, not sent
    assert "day cost" in out.budget_exceeded


def test_debate_when_priced_then_each_call_costs_its_real_usage(
    llm_server: LlmServer, make_panel: Any
) -> None:
    llm_server.script(Reply(content=answer().content, usage=(1000, 100)))
    panel = make_panel(rounds=0, prices=Prices(Decimal("0.15"), Decimal("0.60")))
    out = panel.deliberate([request()], NOW)[DecisionId("paper:BTC/USDT:1h:1")]
    assert [(c.tokens_in, c.tokens_out, c.cost) for c in out.calls] == [
        (1000, 100, Decimal("0.21")), (1000, 100, Decimal("0.21")),
    ]  # fmt: skip


def test_debate_when_same_prompt_again_then_answered_from_the_cache_without_a_call(
    llm_server: LlmServer, make_panel: Any
) -> None:
    llm_server.script(answer("BUY", 0.65))
    log, key = CallLog(), DecisionId("paper:BTC/USDT:1h:1")
    first = make_panel(log, cache="read").deliberate([request()], NOW)
    log.record(first)
    sent = len(llm_server.requests)
    other = make_panel(log, cache="read").deliberate([request("ETH/USDT")], NOW)
    assert len(llm_server.requests) == sent + 4, "another symbol's brief is another prompt"
    same = make_panel(log, cache="read").deliberate([request()], NOW)
    assert len(llm_server.requests) == sent + 4
    assert {c.outcome for c in same[key].calls} == {CallOutcome.CACHED}
    assert all(c.tokens_in == 0 and c.cost == 0 for c in same[key].calls)
    assert same[key].votes == first[key].votes
    assert other[DecisionId("paper:ETH/USDT:1h:1")].votes == first[key].votes


@pytest.mark.parametrize("limits", [None, BudgetLimits(decision_tokens=4000)])
def test_debate_when_strict_replay_of_failures_or_a_budget_stop_then_the_same_outcome(
    llm_server: LlmServer, make_panel: Any, limits: BudgetLimits | None
) -> None:
    """What the issue most wants audited replays too: an abstention, a budget stop."""
    llm_server.answer_with(
        lambda b: (
            Reply(content=answer().content, usage=(1500, 200))
            if agent_of(b) == "bull"
            else status(503)
        )
    )
    log, key = CallLog(), DecisionId("paper:BTC/USDT:1h:1")
    first = make_panel(log, limits=limits or BudgetLimits()).deliberate([request()], NOW)
    log.record(first)
    sent = len(llm_server.requests)
    again = make_panel(log, cache="strict").deliberate([request()], NOW)[key]
    assert len(llm_server.requests) == sent
    assert again.votes == first[key].votes
    assert again.budget_exceeded == first[key].budget_exceeded
    assert [(c.agent, c.round, c.outcome.answered) for c in again.calls] == [
        (c.agent, c.round, c.outcome.answered) for c in first[key].calls
    ]
    assert any(v.abstained for v in again.votes)


def test_debate_when_strict_replay_misses_then_error_and_no_call(
    llm_server: LlmServer, make_panel: Any
) -> None:
    with pytest.raises(ReplayCacheMiss, match="strict replay never calls"):
        make_panel(cache="strict").deliberate([request()], NOW)
    assert llm_server.requests == []


def test_debate_when_failing_and_offline_fallback_then_rule_agents_vote_and_say_so(
    llm_server: LlmServer, make_panel: Any
) -> None:
    llm_server.script(status(503))
    out = make_panel(rounds=0, on_failure="offline_agents").deliberate([request()], NOW)
    votes = out[DecisionId("paper:BTC/USDT:1h:1")].votes
    assert all(
        v.voted and v.reason.startswith("offline fallback (llm server_error)") for v in votes
    )
    assert votes[0] == votes[0].__class__(
        "bull", BullAgent().vote(request().context).action, votes[0].confidence, votes[0].reason
    )


class Stuck:
    """A chat model that ignores the deadline (a provider trickling bytes slower than the
    per-read timeout looks like this): the panel must not wait for it."""

    model, endpoint = "stuck", "127.0.0.1:1"

    def ask(self, system: str, user: str, deadline: float, tags: Any) -> Any:
        time.sleep(1.5)
        raise AssertionError("never heard")


class Broken:
    model, endpoint = "broken", "127.0.0.1:1"

    def ask(self, system: str, user: str, deadline: float, tags: Any) -> Any:
        raise RuntimeError("tracing exploded")


def test_debate_when_a_call_outlives_the_deadline_then_timeout_at_the_deadline() -> None:
    cfg = DebateConfig(rounds=0, decision_timeout_s=0.3, cache="off")
    panel = LlmPanel(Stuck(), repo_templates(), CallLog(), cfg, FixedClock(NOW), Alerts())
    started = time.monotonic()
    out = panel.deliberate([request()], NOW)[DecisionId("paper:BTC/USDT:1h:1")]
    assert time.monotonic() - started < 0.8
    assert [c.outcome for c in out.calls] == [CallOutcome.TIMEOUT, CallOutcome.TIMEOUT]
    panel.close()


def test_debate_when_the_chat_model_raises_then_recorded_abstentions_not_a_crash() -> None:
    cfg = DebateConfig(rounds=1, cache="off")
    panel = LlmPanel(Broken(), repo_templates(), CallLog(), cfg, FixedClock(NOW), Alerts())
    out = panel.deliberate([request()], NOW)[DecisionId("paper:BTC/USDT:1h:1")]
    assert len(out.calls) == 4
    assert all(c.outcome is CallOutcome.UNAVAILABLE for c in out.calls)
    assert "RuntimeError: tracing exploded" in out.calls[0].error
    assert out.all_abstained
    panel.close()


def test_debate_when_usage_not_reported_then_charged_the_worst_case(
    llm_server: LlmServer, make_panel: Any
) -> None:
    llm_server.script(Reply(content=answer().content, usage=(0, 0)))
    prices = Prices(Decimal("1"), Decimal("1"))
    out = make_panel(rounds=0, prices=prices).deliberate([request()], NOW)
    calls = out[DecisionId("paper:BTC/USDT:1h:1")].calls
    assert all(c.tokens_in == 0 for c in calls)
    assert all(c.cost > Decimal("1") for c in calls)  # ~1.5k bytes + 200 output, per 1k at 1


def test_debate_when_a_revision_fails_then_the_vote_says_so(
    llm_server: LlmServer, make_panel: Any
) -> None:
    llm_server.script(answer("BUY", 0.7), answer("BUY", 0.7), status(401))
    out = make_panel(parallel=1).deliberate([request()], NOW)[DecisionId("paper:BTC/USDT:1h:1")]
    assert all(v.reason.endswith("(round 1 revision failed: rejected)") for v in out.votes)


def test_debate_when_the_ledger_lags_then_the_panels_own_day_spend_still_stops_it(
    llm_server: LlmServer, make_panel: Any
) -> None:
    """A backtest records its calls in chunks: the ledger says 0 spent all along."""
    llm_server.script(Reply(content=answer().content, usage=(1500, 200)))
    panel = make_panel(rounds=0, limits=BudgetLimits(day_tokens=12_000))
    stopped = []
    for _ in range(6):
        out = panel.deliberate([request()], NOW)[DecisionId("paper:BTC/USDT:1h:1")]
        stopped.append(bool(out.budget_exceeded))
    assert stopped[:2] == [False, False]
    assert stopped[-1] is True
    assert len(llm_server.requests) <= 12_000 // 1700
