"""Bit-for-bit replay of recorded decisions on real candles in a real ledger (SQLite and
PostgreSQL): every decision of a replay run and of a live run recomputes identically, with the
offline agents and with LLM agents answered from the cache; what differs is named, with why."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd
import pytest

from core.agents.budget import BudgetLimits
from core.agents.calls import CallOutcome
from core.agents.panel import RulePanel
from core.agents.rules import BearAgent, BullAgent
from core.clock import FakeClock, SystemClock
from core.consensus import ConsensusConfig
from core.models.policy import PolicyConfig
from core.ports import Model
from infra.alerts import Alerts
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from infra.ledger.ledger import Ledger
from infra.llm.openai_chat import OpenAiChat
from infra.llm.prompts import repo_templates
from services.debate import CacheOnlyChat, DebateConfig, LlmPanel, ReplayCacheMiss
from services.decide.live import decide_live
from services.decide.replay import replay
from services.decision_replay import CannotReplay, replay_decision
from tests.llm_server import LlmServer, answer, status
from tests.services.backtest.test_identity import RsiModel
from tests.services.decide.fakes import D, config
from tests.services.decide.test_batch_live_replay import close_of_newest

RULES = RulePanel((BullAgent(), BearAgent()))
CFG = replace(
    config(max_total_exposure=D(2500)),
    consensus=ConsensusConfig(threshold=0.3, policy=PolicyConfig(horizon=4)),
)


def load(name: str, version: str) -> Model:
    assert (name, version) == ("rsi", "1")
    return RsiModel()


def replay_all(ledger: Ledger, panel: Any) -> list[Any]:
    decisions = ledger.orders.decisions("paper")
    assert decisions, "the run decided nothing"
    return [replay_decision(ledger, d.decision_id, load, panel, CFG) for d in decisions]


def test_replay_when_every_decision_of_a_replay_run_then_identical(stored: Ledger) -> None:
    report = replay(stored, SimulatedBroker(SimulationConfig()), RsiModel(), RULES, CFG, 20,
                    Alerts())  # fmt: skip
    assert report.orders > 0, "the window should trade, so the risk state changes"
    results = replay_all(stored, RULES)
    assert len(results) == 40
    assert [r.differences for r in results if not r.identical] == []
    assert {r.replayed.consensus.action.value for r in results} >= {"BUY", "HOLD"}


def test_replay_when_decisions_of_a_live_run_then_identical(
    stored: Ledger, btc_1h: pd.DataFrame
) -> None:
    clock = FakeClock(close_of_newest(btc_1h).to_pydatetime() + pd.Timedelta(minutes=3))
    decide_live(stored, "paper", None, RsiModel(), RULES, replace(CFG, catch_up_candles=3),
                clock, Alerts())  # fmt: skip
    results = replay_all(stored, RULES)
    assert len(results) == 6
    assert all(r.identical for r in results)


def test_replay_when_settings_changed_then_what_differs_and_why(stored: Ledger) -> None:
    replay(stored, SimulatedBroker(SimulationConfig()), RsiModel(), RULES, CFG, 3, Alerts())
    record = stored.orders.decisions("paper")[0]
    changed = replace(CFG, consensus=replace(CFG.consensus, model_weight=0.0))
    result = replay_decision(stored, record.decision_id, load, RULES, changed)
    assert not result.identical
    assert any(d.startswith("score: recorded") for d in result.differences)
    assert any("decision settings" in c for c in result.causes)


def test_replay_when_unknown_or_without_provenance_then_cannot_replay(stored: Ledger) -> None:
    with pytest.raises(CannotReplay, match="no decision 'nope'"):
        replay_decision(stored, "nope", load, RULES, CFG)
    replay(stored, SimulatedBroker(SimulationConfig()), RsiModel(), RULES,
           replace(CFG, record_provenance=False), 1, Alerts())  # fmt: skip
    record = stored.orders.decisions("paper")[0]
    with pytest.raises(CannotReplay, match="without provenance"):
        replay_decision(stored, record.decision_id, load, RULES, CFG)


def llm_panel(ledger: Ledger, chat: Any, cache: str, **changes: Any) -> LlmPanel:
    cfg = DebateConfig(rounds=1, cache=cache, decision_timeout_s=5.0, **changes)  # type: ignore[arg-type]
    return LlmPanel(chat, repo_templates(), ledger.agent_calls, cfg, SystemClock(), Alerts(),
                    (BullAgent(), BearAgent()))  # fmt: skip


def test_replay_when_llm_agents_then_identical_from_the_cache_without_a_call(
    stored: Ledger, llm_server: LlmServer
) -> None:
    def by_agent(body: dict[str, Any]) -> Any:
        bull = "You are the Bull" in body["messages"][0]["content"]
        return answer("BUY", 0.8) if bull else answer("SELL", 0.35, reasons=("rsi high",))

    llm_server.answer_with(by_agent)
    chat = OpenAiChat(llm_server.base_url, "test-model", None, 2.0, 200)
    live = llm_panel(stored, chat, "read")
    replay(stored, SimulatedBroker(SimulationConfig()), RsiModel(), live, CFG, 4, Alerts())
    sent = len(llm_server.requests)
    assert sent == 4 * 2 * 4  # candles x symbols x (2 + 2 x 1 round)
    assert (
        len(stored.agent_calls.for_decision(stored.orders.decisions("paper")[0].decision_id)) == 4
    )

    strict = llm_panel(stored, CacheOnlyChat(chat.model, chat.endpoint), "strict")
    results = replay_all(stored, strict)
    assert all(r.identical for r in results), [r.differences for r in results]
    assert len(llm_server.requests) == sent, "a replay called the provider"
    assert all(len(r.replayed.calls) == 4 for r in results)

    other = llm_panel(stored, CacheOnlyChat("another-model", chat.endpoint), "strict")
    with pytest.raises(ReplayCacheMiss):
        replay_decision(stored, results[0].decision_id, load, other, CFG)


def test_replay_when_an_agent_failed_and_budget_stopped_then_identical_without_a_call(
    stored: Ledger, llm_server: LlmServer
) -> None:
    llm_server.answer_with(
        lambda body: (
            answer("BUY", 0.8)
            if "You are the Bull" in body["messages"][0]["content"]
            else status(503)
        )
    )
    chat = OpenAiChat(llm_server.base_url, "test-model", None, 2.0, 200, backoff_s=0.0)
    live = llm_panel(stored, chat, "read", limits=BudgetLimits(decision_tokens=7000))
    replay(stored, SimulatedBroker(SimulationConfig()), RsiModel(), live, CFG, 2, Alerts())
    decisions = stored.orders.decisions("paper")
    # The Bear's 503s count their worst case (no usage came back): round 1 does not fit.
    assert all(d.consensus_reason.startswith("BUDGET_EXCEEDED: round 1") for d in decisions)
    calls = stored.agent_calls.for_decision(decisions[0].decision_id)
    assert [c.outcome for c in calls] == [
        CallOutcome.SERVER_ERROR, CallOutcome.OK,  # bear, bull: by round, then agent
        CallOutcome.BUDGET_EXCEEDED, CallOutcome.BUDGET_EXCEEDED,
    ]  # fmt: skip
    sent = len(llm_server.requests)
    strict = llm_panel(stored, CacheOnlyChat(chat.model, chat.endpoint), "strict")
    results = replay_all(stored, strict)
    assert all(r.identical for r in results), [r.differences for r in results]
    assert len(llm_server.requests) == sent


def test_replay_when_order_size_changed_then_the_order_differs(stored: Ledger) -> None:
    replay(stored, SimulatedBroker(SimulationConfig()), RsiModel(), RULES, CFG, 20, Alerts())
    ordered = [d for d in stored.orders.decisions("paper") if d.client_order_id]
    assert ordered
    bigger = replace(CFG, sizing=replace(CFG.sizing, order_notional=D(1200)))
    result = replay_decision(stored, ordered[0].decision_id, load, RULES, bigger)
    assert any(d.startswith("order: recorded") for d in result.differences)
