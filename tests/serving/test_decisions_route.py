"""GET /api/v1/decisions/{id}: a decision recorded with its LLM calls, through the real app over
the real ledger (SQLite and PostgreSQL); ids with slashes and colons, plain or URL-encoded; a
token with scope read."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from core.agents.calls import AgentCall
from core.auth import Scope
from core.records import DecisionRecord
from core.risk.limits import RiskLimits
from infra.ledger.ledger import Ledger
from serving.routes.decisions import DecisionOut, DecisionWithCalls
from tests.services.test_decisions import (
    BTC,
    BULL_ANSWER,
    BULL_PROMPT,
    DECISION_ID,
    llm_decision,
    record,
)
from tests.serving.conftest import make_client
from tests.serving.resources import conforms
from tests.serving.tokens import bearer, issue_token

ROUTE = "/api/v1/decisions/"
# A well-formed token no ledger issued: checking it needs the ledger.
STRANGER = "tf_0123456789ab_" + "A" * 43


@pytest.fixture
def recorded(ledger: Ledger) -> Ledger:
    record(ledger, llm_decision())
    return ledger


@pytest.fixture
def client(ledger_url: str) -> Iterator[TestClient]:
    """The app, with a read token sent on every request."""
    with make_client(ledger_url) as c:
        c.headers.update(bearer(issue_token(ledger_url, Scope.READ)))
        yield c


def names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def get_ok(client: TestClient, path: str) -> dict[str, Any]:
    r = client.get(path)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_get_decision_when_recorded_with_calls_then_every_field_of_it_and_of_each_call(
    client: TestClient, recorded: Ledger
) -> None:
    body = get_ok(client, ROUTE + DECISION_ID)
    d = body["decision"]
    assert set(d) == names(DecisionRecord)  # a field added to the record must show here
    order = llm_decision().order
    assert order is not None
    assert {k: d[k] for k in ("decision_id", "symbol", "price", "candle_time", "decided_at",
                              "action", "regime", "risk_approved", "denials", "client_order_id",
                              "order_book_features", "provenance", "model_version")} == {
        "decision_id": DECISION_ID,
        "symbol": "BTC/USDT",
        "price": "43000.5",
        "candle_time": "2024-02-03T09:00:00+00:00",
        "decided_at": "2024-02-03T10:00:05+00:00",
        "action": "BUY",
        "regime": "trend_up",
        "risk_approved": True,
        "denials": [],
        "client_order_id": order.client_order_id,
        "order_book_features": {"book_imbalance_top5": 0.25},
        "provenance": {"seed": 7, "panel": "gpt-test-mini@127.0.0.1"},
        "model_version": "3",
    }  # fmt: skip
    assert set(d["contributions"]) == {"model", "bull"}  # an abstaining agent has no share
    assert sum(d["contributions"].values()) == pytest.approx(d["score"], abs=1e-5)
    assert d["votes"] == [
        {"agent": "bull", "action": "BUY", "confidence": 0.7, "reason": "rsi rising",
         "horizon": 4, "reasons": ["rsi rising", "above sma[20]"], "risk_flags": ["thin book"],
         "abstained": ""},
        {"agent": "bear", "action": "HOLD", "confidence": 0.0,
         "reason": "abstained: invalid: confidence: Input should be less than or equal to 1",
         "horizon": 0, "reasons": [], "risk_flags": [], "abstained": "invalid"},
    ]  # fmt: skip


def test_get_decision_when_recorded_with_calls_then_calls_in_full_by_round_with_totals(
    client: TestClient, recorded: Ledger
) -> None:
    body = get_ok(client, ROUTE + DECISION_ID)
    calls = body["calls"]
    assert all(set(c) == names(AgentCall) for c in calls)
    assert [(c["round"], c["agent"], c["outcome"]) for c in calls] == [
        (0, "bear", "timeout"), (0, "bull", "ok"), (1, "bear", "invalid"), (1, "bull", "cached"),
    ]  # fmt: skip
    bull = calls[1]
    assert (bull["prompt"], bull["response"]) == (BULL_PROMPT, BULL_ANSWER)  # in full
    assert (bull["cost"], bull["tokens_in"], bull["tokens_out"]) == ("0.00015", 120, 30)
    assert bull["vote"]["reasons"] == ["rsi rising", "above sma[20]"]
    assert bull["called_at"] == "2024-02-03T10:00:01+00:00"
    assert (calls[2]["vote"], calls[2]["error"]) == (
        None, "confidence: Input should be less than or equal to 1"
    )  # fmt: skip
    assert body["totals"] == {
        "calls": 4, "abstentions": 2, "tokens_in": 260, "tokens_out": 55, "cost": "0.00032",
    }  # fmt: skip
    assert set(body["totals"]) == {"calls", "abstentions", "tokens_in", "tokens_out", "cost"}


def test_get_decision_when_id_url_encoded_then_the_same_decision(
    client: TestClient, recorded: Ledger
) -> None:
    encoded = quote(DECISION_ID, safe="")
    assert encoded == "paper%3ABTC%2FUSDT%3A1h%3A1706950800"
    assert get_ok(client, ROUTE + encoded) == get_ok(client, ROUTE + DECISION_ID)


def test_get_decision_when_denied_by_the_risk_gate_then_denials_with_codes_and_no_order(
    client: TestClient, ledger: Ledger
) -> None:
    small = RiskLimits(whitelist=(BTC,), max_order_notional=Decimal(10),
                       max_position_notional=Decimal(3000), max_total_exposure=Decimal(5000),
                       max_daily_loss=Decimal(300))  # fmt: skip
    record(ledger, llm_decision(limits=small))
    d = get_ok(client, ROUTE + DECISION_ID)["decision"]
    assert (d["risk_approved"], d["client_order_id"]) == (False, None)
    assert [x["code"] for x in d["denials"]] == ["ORDER_NOTIONAL_EXCEEDS_MAX"]
    assert d["denials"][0]["detail"]


@pytest.mark.parametrize(
    "unknown", ["paper:ETH/USDT:1h:1706950800", "paper%3AETH%2FUSDT%3A1h%3A1706950800", "%00"]
)
def test_get_decision_when_unknown_then_404_naming_the_id(
    client: TestClient, recorded: Ledger, unknown: str
) -> None:
    r = client.get(ROUTE + unknown)
    assert r.status_code == 404
    detail = r.json()["detail"]
    wanted = "'\\x00'" if unknown == "%00" else "'paper:ETH/USDT:1h:1706950800'"
    assert detail.startswith(f"no decision with id {wanted}")


def test_get_decision_when_no_token_then_401(client: TestClient, recorded: Ledger) -> None:
    r = client.get(ROUTE + DECISION_ID, headers={"Authorization": ""})
    assert r.status_code == 401


def test_get_decision_when_recorded_then_the_answer_is_its_openapi_model(
    client: TestClient, recorded: Ledger
) -> None:
    body = get_ok(client, ROUTE + DECISION_ID)
    conforms(DecisionWithCalls, body)
    conforms(DecisionOut, body["decision"])


def test_get_decision_when_ledger_unreachable_then_503_with_a_reason_code() -> None:
    with make_client("postgresql+psycopg://postgres@127.0.0.1:1/nowhere") as c:
        r = c.get(ROUTE + DECISION_ID, headers=bearer(STRANGER))
    assert (r.status_code, r.json()) == (503, {"status": "unavailable",
                                               "reason": "ledger_unavailable"})  # fmt: skip


def test_api_import_when_decisions_route_registered_then_no_llm_or_model_library_loaded() -> None:
    code = (
        "import sys, serving.app, serving.routes.decisions; "
        "print(sorted(m for m in ('openai', 'mlflow', 'xgboost', 'lightgbm', 'torch', 'talib') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"
