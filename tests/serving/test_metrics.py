"""GET /metrics: the API's HTTP metrics and the trading system's counts from the ledger, read at
scrape time (the flows write them in other processes), on SQLite and PostgreSQL; the latency
histograms from the decisions the live flow recorded, and the API's own model calls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from core.candles.timeframe import timeframe_delta
from core.clock import FakeClock
from core.latency import DECISION_LATENCY_BOUNDS, PREDICT_BOUNDS, LatencyHistogram
from infra.alerts import Alerts
from infra.ledger.ledger import Ledger
from registry.model_catalog import MlflowCatalog
from services.decide.live import decide_live
from tests.registry.test_model_cache import Store
from tests.services.decide.fakes import BUYERS, ROWS, SYMBOLS, D, FixedModel, config
from tests.services.decide.test_batch_live_replay import close_of_newest
from tests.services.test_decisions import llm_decision, record
from tests.serving.conftest import body, make_client, signed
from tests.serving.test_ml_routes import PREDICT, by_candle
from tests.serving.test_ml_routes import make_client as make_ml_client

LATENCY = "tradeflow_decision_latency_seconds"
PREDICT_S = "tradeflow_model_predict_seconds"
FLOWS = (("source", "flows"),)
API = (("source", "api"),)
Scraped = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def client(ledger_url: str, ledger: Ledger) -> Iterator[TestClient]:
    record(ledger, llm_decision())
    with make_client(ledger_url) as c:
        yield c


def scrape(client: TestClient) -> Scraped:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def test_metrics_when_a_decision_with_llm_calls_is_recorded_then_counted_from_the_ledger(
    client: TestClient,
) -> None:
    m = scrape(client)
    assert m[("tradeflow_ledger_up", ())] == 1
    assert m[("tradeflow_decisions_total", (("action", "BUY"),))] == 1
    assert m[("tradeflow_orders_total", (("status", "new"),))] == 1
    labels = (("agent", "bull"), ("model", "gpt-test-mini"), ("outcome", "ok"))
    assert m[("tradeflow_llm_calls_total", labels)] == 1
    timeouts = (("agent", "bear"), ("model", "gpt-test-mini"), ("outcome", "timeout"))
    assert m[("tradeflow_llm_calls_total", timeouts)] == 1
    tokens = (("agent", "bear"), ("direction", "input"), ("model", "gpt-test-mini"))
    assert m[("tradeflow_llm_tokens_total", tokens)] == 140
    cost = (("agent", "bull"), ("model", "gpt-test-mini"))
    assert m[("tradeflow_llm_cost_total", cost)] == pytest.approx(0.00015)
    assert m[("tradeflow_trading_state", (("state", "active"),))] == 1
    assert m[("tradeflow_kill_switch_active", ())] == 0


def test_metrics_when_the_kill_switch_is_on_then_the_state_says_halted(
    client: TestClient,
) -> None:
    assert client.post("/api/v1/safety/kill-switch", json=body(), headers=signed("activate"))
    m = scrape(client)
    assert m[("tradeflow_kill_switch_active", ())] == 1
    assert m[("tradeflow_trading_state", (("state", "halted"),))] == 1
    assert m[("tradeflow_trading_state", (("state", "active"),))] == 0


def test_metrics_when_routes_were_called_then_http_metrics_by_handler(
    client: TestClient,
) -> None:
    client.get("/api/v1/health")
    client.get("/api/v1/health")
    m = scrape(client)
    key = ("http_requests_total", (("handler", "/api/v1/health"), ("method", "GET"),
                                   ("status", "2xx")))  # fmt: skip
    assert m[key] == 2


def test_metrics_when_the_ledger_is_unreachable_then_ledger_down_not_an_error() -> None:
    with make_client("postgresql+psycopg://nobody@127.0.0.1:1/none") as c:
        m = scrape(c)
    assert m[("tradeflow_ledger_up", ())] == 0


# -- latency histograms ------------------------------------------------------------------------


@pytest.fixture
def decided(ledger: Ledger, btc_1h: pd.DataFrame, eth_1h: pd.DataFrame) -> Ledger:
    """The live flow's decisions on real candles, timings kept: it caught up 24 candles, 3
    minutes after the newest closed. And one decision from before timings were kept."""
    ledger.accounts.ensure("paper", D(10000), btc_1h["open_time"].iloc[0].to_pydatetime())
    for symbol, frame in zip(SYMBOLS, (btc_1h, eth_1h), strict=True):
        ledger.candles.upsert("binance", symbol, "1h", frame.head(ROWS))
    clock = FakeClock(close_of_newest(btc_1h).to_pydatetime() + timedelta(minutes=3))
    decide_live(ledger, "paper", None, FixedModel(), BUYERS, config(), clock, Alerts())
    record(ledger, llm_decision())  # its provenance has no timings
    return ledger


def expected(ledger: Ledger) -> tuple[LatencyHistogram, LatencyHistogram]:
    """The histograms of the stored rows, bucketed here."""
    rows = ledger.orders.decisions("paper")
    latency = [
        (r.decided_at - r.candle_time - timeframe_delta(r.timeframe)).total_seconds() for r in rows
    ]
    predict = [r.provenance["timings"]["predict_s"] for r in rows if "timings" in r.provenance]
    return (
        LatencyHistogram.of(DECISION_LATENCY_BOUNDS, latency),
        LatencyHistogram.of(PREDICT_BOUNDS, predict),
    )


def histogram_of(m: Scraped, name: str, labels: tuple[tuple[str, str], ...] = ()) -> tuple:
    """(cumulative counts by bound, +Inf, count, sum) as scraped."""
    bounds = DECISION_LATENCY_BOUNDS if name == LATENCY else PREDICT_BOUNDS

    def bucket(le: str) -> float:
        return m[(f"{name}_bucket", tuple(sorted((("le", le), *labels))))]

    return (
        tuple(bucket(floatToGoString(b)) for b in bounds),
        bucket("+Inf"),
        m[(f"{name}_count", labels)],
        m[(f"{name}_sum", labels)],
    )


def as_scraped(h: LatencyHistogram) -> tuple:
    return (tuple(map(float, h.cumulative)), h.count, h.count, pytest.approx(h.total, rel=1e-9))


def test_metrics_when_the_live_flow_decided_then_histograms_of_the_stored_decisions(
    ledger_url: str, decided: Ledger
) -> None:
    latency, predict = expected(decided)
    assert (latency.count, predict.count) == (49, 48)  # 24 candles x 2 symbols, + 1 untimed
    assert len(set(latency.cumulative)) > 3, "the latencies should spread over the buckets"
    with make_client(ledger_url) as c:
        m = scrape(c)
    assert histogram_of(m, LATENCY) == as_scraped(latency)
    assert histogram_of(m, PREDICT_S, FLOWS) == as_scraped(predict)
    assert histogram_of(m, PREDICT_S, API) == ((0.0,) * len(PREDICT_BOUNDS), 0, 0, 0)


def test_metrics_when_no_decisions_then_zero_counts_not_a_failed_scrape(
    ledger_url: str, ledger: Ledger
) -> None:
    with make_client(ledger_url) as c:
        m = scrape(c)
    assert m[("tradeflow_ledger_up", ())] == 1
    assert histogram_of(m, LATENCY) == ((0.0,) * len(DECISION_LATENCY_BOUNDS), 0, 0, 0)
    assert histogram_of(m, PREDICT_S, FLOWS) == ((0.0,) * len(PREDICT_BOUNDS), 0, 0, 0)


def test_metrics_when_the_ledger_is_unreachable_then_the_apis_predictions_still_exported() -> None:
    with make_client("postgresql+psycopg://nobody@127.0.0.1:1/none") as c:
        m = scrape(c)
    assert histogram_of(m, PREDICT_S, API)[2] == 0
    assert (f"{PREDICT_S}_count", FLOWS) not in m  # unknown while the ledger is down
    assert (f"{LATENCY}_count", ()) not in m


def test_metrics_when_the_api_predicted_then_each_model_call_under_source_api(
    candle_ledger: str, store: Store, champion: str
) -> None:
    with make_ml_client(candle_ledger, store.cache(alias_ttl_s=0), MlflowCatalog(store.uri)) as c:
        before = scrape(c)
        started = time.perf_counter()
        assert c.post(PREDICT, json=by_candle("ETH/USDT")).status_code == 200
        assert c.post(PREDICT, json=by_candle("BTC/USDT")).status_code == 200
        spent = time.perf_counter() - started
        unknown = {"symbol": "ETH/USDT", "candle_time": "2019-01-01T00:00:00+00:00"}
        assert c.post(PREDICT, json=unknown).status_code == 404  # no model call: not counted
        m = scrape(c)
    assert histogram_of(before, PREDICT_S, API)[1:3] == (0, 0)
    buckets, inf, count, total = histogram_of(m, PREDICT_S, API)
    assert (inf, count) == (2, 2)
    assert list(buckets) == sorted(buckets)
    assert buckets[-1] <= 2
    assert 0 < total <= spent  # the model calls alone, inside the two requests
    assert histogram_of(m, PREDICT_S, FLOWS)[2] == 0  # no decisions in this ledger
