"""GET /api/v1/decisions: the account's decisions, newest candle first, through the real app
over the real ledger (SQLite and PostgreSQL): votes, what the LLM calls came to, the calls in
full only with ?calls=true, filters and keyset pages; scope read."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infra.ledger.ledger import Ledger, open_ledger
from serving.routes.decisions import DecisionEntryOut, DecisionsPage
from tests.services.test_decisions import BULL_PROMPT, T, llm_decision, record
from tests.serving.resources import (  # noqa: F401  fixtures, used by name
    api_fixture,
    conforms,
    every_page,
    ok,
    reader_fixture,
)

ROUTE = "/api/v1/decisions"


@pytest.fixture
def decided(ledger_url: str, api: TestClient) -> Ledger:
    led = open_ledger(ledger_url)
    for k in range(5):
        record(led, llm_decision(candle_time=T + timedelta(hours=k)))
    return led


def test_decisions_when_paged_then_every_decision_once_newest_first_with_votes_and_totals(
    api: TestClient, decided: Ledger, reader: dict[str, str]
) -> None:
    entries = every_page(api, ROUTE, reader, "decisions", limit=2)
    assert [e["decision"]["candle_time"] for e in entries] == [
        (T + timedelta(hours=k)).isoformat() for k in reversed(range(5))
    ]
    first = entries[0]
    conforms(DecisionEntryOut, first)
    assert [v["agent"] for v in first["decision"]["votes"]] == ["bull", "bear"]
    assert first["totals"] == {"calls": 4, "abstentions": 2, "tokens_in": 260, "tokens_out": 55,
                               "cost": "0.00032"}  # fmt: skip
    assert first["calls"] is None
    conforms(DecisionsPage, ok(api, ROUTE, reader, limit=2))


def test_decisions_when_calls_asked_for_then_each_call_in_full_by_round(
    api: TestClient, decided: Ledger, reader: dict[str, str]
) -> None:
    (entry,) = ok(api, ROUTE, reader, limit=1, calls="true")["decisions"]
    conforms(DecisionEntryOut, entry)
    turns = [(c["round"], c["agent"]) for c in entry["calls"]]
    assert turns == [(0, "bear"), (0, "bull"), (1, "bear"), (1, "bull")]
    assert entry["calls"][1]["prompt"] == BULL_PROMPT


def test_decisions_when_filtered_then_by_symbol_action_and_since(
    api: TestClient, decided: Ledger, reader: dict[str, str]
) -> None:
    def count(**params: Any) -> int:
        return len(ok(api, ROUTE, reader, **params)["decisions"])

    assert count(symbol="BTC/USDT", action="BUY") == 5
    assert count(action="SELL") == 0
    assert count(symbol="ETH/USDT") == 0
    assert count(since=(T + timedelta(hours=3)).isoformat()) == 2


@pytest.mark.parametrize(
    "params", [{"action": "buy-ish"}, {"calls": "perhaps"}, {"since": "now"}, {"limit": -1}]
)
def test_decisions_when_a_parameter_is_bad_then_422(
    api: TestClient, reader: dict[str, str], params: dict[str, Any]
) -> None:
    r = api.get(ROUTE, headers=reader, params=params)
    assert r.status_code == 422, r.text


def test_decisions_when_no_token_then_401(api: TestClient) -> None:
    assert api.get(ROUTE).status_code == 401
