"""GET /metrics: the API's HTTP metrics and the trading system's counts from the ledger, read at
scrape time (the flows write them in other processes), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from infra.ledger.ledger import Ledger
from tests.services.test_decisions import llm_decision, record
from tests.serving.conftest import body, make_client, signed


@pytest.fixture
def client(ledger_url: str, ledger: Ledger) -> Iterator[TestClient]:
    record(ledger, llm_decision())
    with make_client(ledger_url) as c:
        yield c


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
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
