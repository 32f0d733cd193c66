"""/metrics for Prometheus: the API's own HTTP metrics (prometheus-fastapi-instrumentator) and
the trading system's, counted from the ledger at scrape time. The flows run in other processes
(Prefect workers): what they did reaches Prometheus through the ledger they write, whole and
without a multiprocess setup; counters that only grow (orders, fills, LLM calls, tokens, cost)
are exported as counters, the rest as gauges."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator import Instrumentator

from core.errors import TradeflowError
from core.records import TradingCounts
from core.risk.state import TradingState, effective_state
from serving.deps import Api

log = logging.getLogger(__name__)


def install_metrics(app: FastAPI, api: Api) -> None:
    """HTTP metrics on every route, and GET /metrics over a registry of this app's own (each
    app counts its own requests: a test or a second app never collides with the first)."""
    registry = CollectorRegistry()
    Instrumentator(registry=registry, excluded_handlers=["/metrics"]).instrument(app)
    registry.register(LedgerCollector(api))

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:  # sync: the ledger's reads run off the loop
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class LedgerCollector(Collector):
    def __init__(self, api: Api) -> None:
        self.api = api

    def collect(self) -> Iterator[Metric]:
        api = self.api
        try:
            counts = api.ledger.overview.trading_counts(api.clock.now(), api.settings.account)
        except TradeflowError as exc:  # the ledger is down: say so, never fail the scrape
            log.warning("metrics: ledger not readable: %s", exc)
            up = GaugeMetricFamily("tradeflow_ledger_up", "1 when the ledger answered")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("tradeflow_ledger_up", "1 when the ledger answered")
        up.add_metric([], 1)
        yield up
        yield from trading_families(counts)


def trading_families(counts: TradingCounts) -> Iterator[Metric]:
    yield from _safety(counts)
    yield _counter("tradeflow_orders", "orders by status", ["status"], counts.orders)
    yield _counter("tradeflow_decisions", "decisions by action", ["action"], counts.decisions)
    yield _counter("tradeflow_risk_denials", "risk-gate denials by code", ["code"], counts.denials)
    fills = CounterMetricFamily("tradeflow_fills", "fills recorded")
    fills.add_metric([], counts.fills)
    yield fills
    held = GaugeMetricFamily("tradeflow_position_quantity", "quantity held", labels=["symbol"])
    for symbol, quantity in sorted(counts.positions.items()):
        held.add_metric([symbol], quantity)
    yield held
    yield from _llm(counts)


def _safety(counts: TradingCounts) -> Iterator[Metric]:
    trading, _, _ = effective_state(counts.flags)
    state = GaugeMetricFamily(
        "tradeflow_trading_state", "1 for the effective trading state", labels=["state"]
    )
    for s in TradingState:
        state.add_metric([s.value], 1.0 if s is trading else 0.0)
    yield state
    kill = GaugeMetricFamily("tradeflow_kill_switch_active", "1 while the kill switch is on")
    kill.add_metric([], 1.0 if counts.kill_switch.active else 0.0)
    yield kill
    breaker = GaugeMetricFamily("tradeflow_breaker_tripped", "1 while the breaker halts trading")
    breaker.add_metric([], 0.0 if counts.flags.breaker_reason is None else 1.0)
    yield breaker


def _llm(counts: TradingCounts) -> Iterator[Metric]:
    calls = CounterMetricFamily(
        "tradeflow_llm_calls", "LLM agent calls by outcome", labels=["agent", "model", "outcome"]
    )
    for key, n in sorted(counts.llm_calls.items()):
        calls.add_metric(list(key), n)
    yield calls
    tokens = CounterMetricFamily(
        "tradeflow_llm_tokens", "LLM tokens used", labels=["agent", "model", "direction"]
    )
    for key, n in sorted(counts.llm_tokens.items()):
        tokens.add_metric(list(key), n)
    yield tokens
    cost = CounterMetricFamily(
        "tradeflow_llm_cost", "LLM cost in the configured price unit", labels=["agent", "model"]
    )
    for key, value in sorted(counts.llm_cost.items()):
        cost.add_metric(list(key), value)
    yield cost


def _counter(name: str, doc: str, labels: list[str], values: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, n in sorted(values.items()):
        family.add_metric([key], n)
    return family
