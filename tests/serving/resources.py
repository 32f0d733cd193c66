"""What the resource route tests share: the real app over a real ledger (SQLite and PostgreSQL,
tests/serving/conftest.py), tokens issued into that ledger, hourly candles up to the test
clock's now, and helpers to walk pages and check answers against their OpenAPI models.
Import the fixtures (`api_fixture`, ...) into a test module to use them by their names
(`api`, `stored`, `reader`, `trader`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from core.auth import Scope
from infra.ledger.ledger import Ledger, open_ledger
from tests.infra.ledger.book import BTC, ETH, store_candles
from tests.serving.conftest import NOW, make_client
from tests.serving.tokens import bearer, issue_token


@pytest.fixture(name="api")
def api_fixture(ledger_url: str) -> Iterator[TestClient]:
    """The app, started (its start opens the paper account with 10,000 USDT)."""
    with make_client(ledger_url) as c:
        yield c


@pytest.fixture(name="stored")
def stored_fixture(ledger_url: str, api: TestClient) -> Ledger:
    """The app's ledger, with BTC at 40,000 and ETH at 2,000 in candles closing up to now."""
    led = open_ledger(ledger_url)
    store_candles(led, BTC, ["39000", "39500", "40000"], NOW - timedelta(hours=3))
    store_candles(led, ETH, ["2000", "2000", "2000"], NOW - timedelta(hours=3))
    return led


@pytest.fixture(name="reader")
def reader_fixture(ledger_url: str) -> dict[str, str]:
    return bearer(issue_token(ledger_url, Scope.READ, name="reader"))


@pytest.fixture(name="trader")
def trader_fixture(ledger_url: str) -> dict[str, str]:
    return bearer(issue_token(ledger_url, Scope.TRADE, name="trader"))


def ok(client: TestClient, path: str, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    r = client.get(path, headers=headers, params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def every_page(
    client: TestClient, path: str, headers: dict[str, str], key: str, **params: Any
) -> list[dict[str, Any]]:
    """Every item of a listing, page after page (`key` names the page's list)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = ok(client, path, headers, **params, **({"cursor": cursor} if cursor else {}))
        items += page[key]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def conforms(model: type[BaseModel], body: dict[str, Any]) -> None:
    """The answer is what the OpenAPI document says (its response model, strictly: no field
    missing, none extra)."""
    assert set(body) == set(model.model_fields), set(body) ^ set(model.model_fields)
    model.model_validate(body)
