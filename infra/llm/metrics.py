"""Prometheus counters of the LLM agents' calls, tokens and cost, per agent and model, in the
default registry of the process that makes the calls (a flow run's worker): any Prometheus
exporter of that process (prometheus_client.start_http_server) serves them."""

from __future__ import annotations

from prometheus_client import Counter

from core.agents.calls import AgentCall

CALLS = Counter("tradeflow_llm_calls", "LLM agent calls by outcome", ["agent", "model", "outcome"])
TOKENS = Counter("tradeflow_llm_tokens", "LLM tokens used", ["agent", "model", "direction"])
COST = Counter("tradeflow_llm_cost", "LLM cost in the configured price unit", ["agent", "model"])


def count_call(call: AgentCall) -> None:
    CALLS.labels(call.agent, call.model, call.outcome.value).inc()
    if call.tokens_in:
        TOKENS.labels(call.agent, call.model, "input").inc(call.tokens_in)
    if call.tokens_out:
        TOKENS.labels(call.agent, call.model, "output").inc(call.tokens_out)
    if call.cost:
        COST.labels(call.agent, call.model).inc(float(call.cost))
