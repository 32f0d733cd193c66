"""The LLM counters as Prometheus exposes them: calls by outcome, tokens by direction, cost."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from prometheus_client import REGISTRY, generate_latest

from core.agents.calls import CallOutcome
from infra.llm.metrics import count_call
from tests.infra.ledger.test_agent_calls import call


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_count_call_when_answered_and_failed_then_counters_move_by_agent_and_model() -> None:
    before = value("tradeflow_llm_calls_total", agent="bull", model="gpt-test", outcome="ok")
    tokens = value("tradeflow_llm_tokens_total", agent="bull", model="gpt-test", direction="input")
    cost = value("tradeflow_llm_cost_total", agent="bull", model="gpt-test")
    count_call(call("bull", cost=Decimal("0.25")))
    count_call(
        replace(
            call("bull"), outcome=CallOutcome.TIMEOUT, tokens_in=0, tokens_out=0, cost=Decimal(0)
        )
    )
    assert value("tradeflow_llm_calls_total", agent="bull", model="gpt-test", outcome="ok") == (
        before + 1
    )
    assert (
        value("tradeflow_llm_calls_total", agent="bull", model="gpt-test", outcome="timeout") >= 1
    )
    assert (
        value("tradeflow_llm_tokens_total", agent="bull", model="gpt-test", direction="input")
        == tokens + 812
    )
    assert value("tradeflow_llm_cost_total", agent="bull", model="gpt-test") == cost + 0.25
    assert b"tradeflow_llm_calls_total" in generate_latest(REGISTRY)
