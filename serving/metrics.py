"""/metrics for Prometheus: the API's own HTTP metrics (prometheus-fastapi-instrumentator) and
the trading system's, counted from the ledger at scrape time. The flows run in other processes
(Prefect workers): what they did reaches Prometheus through the ledger they write, whole and
without a multiprocess setup; counters that only grow (orders, fills, LLM calls, tokens, cost)
are exported as counters, the rest as gauges.

Two histograms (bounds in core.latency), bucketed by the ledger's own query:
- `tradeflow_decision_latency_seconds`: from a candle's close to its decision being made
  (`decided_at`), every decision of the configured account (a replay's, decided in simulated
  time as its candle closed, counts 0 s).
- `tradeflow_model_predict_seconds`: the model's seconds per prediction, by `source`.
  `source="flows"`: what each live decision recorded in its provenance (`timings.predict_s`:
  its share of the batch's model call, services.decide.step.timings); replays, backtests and
  decisions recorded before timings were kept have none and are not counted.
  `source="api"`: each POST /api/v1/ml/predict's model call (one prediction), observed live
  in this process (a restart starts it at zero, as any Prometheus counter).
  One name, so `sum by (source, le)` compares the two; the API's half is a prometheus_client
  Histogram not registered on its own: its samples join the ledger's in one family, whose
  name may appear once in an exposition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any, Protocol

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from prometheus_fastapi_instrumentator import Instrumentator

from core.errors import TradeflowError
from core.latency import PREDICT_BOUNDS, LatencyHistogram
from core.ports import Model
from core.records import TradingCounts
from core.risk.state import TradingState, effective_state
from services.ml import MlService, ModelSource
from serving.deps import Api

log = logging.getLogger(__name__)


DECISION_LATENCY = "tradeflow_decision_latency_seconds"
MODEL_PREDICT = "tradeflow_model_predict_seconds"
_PREDICT_DOC = "the model's seconds per prediction, by source (flows: from the ledger; api)"


def install_metrics(app: FastAPI, api: Api) -> None:
    """HTTP metrics on every route, and GET /metrics over a registry of this app's own (each
    app counts its own requests: a test or a second app never collides with the first).
    `app.state.predict_seconds` is where the model routes observe their predictions."""
    registry = CollectorRegistry()
    Instrumentator(registry=registry, excluded_handlers=["/metrics"]).instrument(app)
    predict = Histogram(
        MODEL_PREDICT, _PREDICT_DOC, ["source"], buckets=PREDICT_BOUNDS, registry=None
    )
    app.state.predict_seconds = predict.labels(source="api")
    registry.register(LedgerCollector(api, predict))

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:  # sync: the ledger's reads run off the loop
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class LedgerCollector(Collector):
    def __init__(self, api: Api, predict: Histogram) -> None:
        self.api = api
        self.predict = predict  # the API's own predictions, labelled source="api"

    def collect(self) -> Iterator[Metric]:
        api = self.api
        try:
            counts = api.ledger.overview.trading_counts(api.clock.now(), api.settings.account)
        except TradeflowError as exc:  # the ledger is down: say so, never fail the scrape
            log.warning("metrics: ledger not readable: %s", exc)
            up = GaugeMetricFamily("tradeflow_ledger_up", "1 when the ledger answered")
            up.add_metric([], 0)
            yield up
            yield predict_family(None, self.predict)  # the API's own still count
            return
        up = GaugeMetricFamily("tradeflow_ledger_up", "1 when the ledger answered")
        up.add_metric([], 1)
        yield up
        yield from trading_families(counts)
        latency = HistogramMetricFamily(
            DECISION_LATENCY, "seconds from a candle's close to its decision"
        )
        latency.add_metric([], _buckets(counts.decision_latency), counts.decision_latency.total)
        yield latency
        yield predict_family(counts.predict_seconds, self.predict)


def predict_family(flows: LatencyHistogram | None, api: Histogram) -> Metric:
    """One family for both sources: the flows' from the ledger (absent while it is down), the
    API's from its live histogram."""
    family = HistogramMetricFamily(MODEL_PREDICT, _PREDICT_DOC, labels=["source"])
    if flows is not None:
        family.add_metric(["flows"], _buckets(flows), flows.total)
    for metric in api.collect():
        for s in metric.samples:
            family.add_sample(s.name, s.labels, s.value, s.timestamp, s.exemplar)
    return family


def _buckets(histogram: LatencyHistogram) -> list[tuple[str, float]]:
    pairs = zip(histogram.bounds, histogram.cumulative, strict=True)
    return [*((floatToGoString(b), float(n)) for b, n in pairs), ("+Inf", float(histogram.count))]


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


class Observer(Protocol):
    def observe(self, amount: float) -> None: ...


def observed(service: MlService, histogram: Observer | None) -> MlService:
    """`service` whose models' predict calls `histogram` observes (in seconds: one prediction
    a call on the API); `service` itself when there is nothing to observe with."""
    if histogram is None:
        return service
    return replace(service, cache=_ObservedModels(service.cache, histogram))


class _ObservedModels:
    def __init__(self, source: ModelSource, histogram: Observer) -> None:
        self._source, self._histogram = source, histogram

    def get(self, name: str, alias_or_version: str) -> Model:
        return _ObservedModel(self._source.get(name, alias_or_version), self._histogram)


class _ObservedModel:
    """The served model with its predict timed: the rest (name, version, edge, ...) is the
    model's own, passed through unchanged."""

    def __init__(self, model: Model, histogram: Observer) -> None:
        self._model, self._histogram = model, histogram

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        started = time.perf_counter()
        p = self._model.predict(features)
        self._histogram.observe(time.perf_counter() - started)
        return p
