"""GET /api/v1/trades through the real app over the real ledger (SQLite and PostgreSQL): fills
newest first with their order and realised P&L, filters, keyset pages; scope read."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.types import Side
from infra.ledger.ledger import Ledger
from serving.routes.trades import TradeOut, TradesPage
from tests.infra.ledger.book import BTC, ETH, trade
from tests.serving.conftest import NOW
from tests.serving.resources import (  # noqa: F401  fixtures, used by name
    api_fixture,
    conforms,
    every_page,
    ok,
    reader_fixture,
    stored_fixture,
)

ROUTE = "/api/v1/trades"


@pytest.fixture
def traded(stored: Ledger) -> Ledger:
    trade(stored, BTC, Side.BUY, "0.02", "38000", NOW - timedelta(hours=5), fee="0.76")
    trade(stored, ETH, Side.BUY, "1", "1900", NOW - timedelta(hours=4), fee="1.9")
    trade(stored, BTC, Side.SELL, "0.02", "39000", NOW - timedelta(hours=3), fee="0.78")
    return stored


def test_trades_when_paged_then_every_fill_once_newest_first_with_pnl(
    api: TestClient, traded: Ledger, reader: dict[str, str]
) -> None:
    fills = every_page(api, ROUTE, reader, "trades", limit=2)
    assert [(t["symbol"], t["side"]) for t in fills] == [("BTC/USDT", "sell"), ("ETH/USDT", "buy"),
                                                         ("BTC/USDT", "buy")]  # fmt: skip
    newest = fills[0]
    conforms(TradeOut, newest)
    conforms(TradesPage, ok(api, ROUTE, reader))
    assert {k: newest[k] for k in ("quantity", "price", "notional", "fee", "realised_pnl",
                                   "origin", "order_type", "decision_id")} == {
        "quantity": "0.02", "price": "39000", "notional": "780", "fee": "0.78",
        "realised_pnl": "19.22", "origin": "manual", "order_type": "market",
        "decision_id": None,
    }  # fmt: skip


def test_trades_when_filtered_then_by_symbol_and_since(
    api: TestClient, traded: Ledger, reader: dict[str, str]
) -> None:
    def sides(**params: Any) -> list[str]:
        return [f"{t['symbol']} {t['side']}" for t in ok(api, ROUTE, reader, **params)["trades"]]

    assert sides(symbol="BTC/USDT") == ["BTC/USDT sell", "BTC/USDT buy"]
    assert sides(since=(NOW - timedelta(hours=4)).isoformat()) == ["BTC/USDT sell",
                                                                  "ETH/USDT buy"]  # fmt: skip


@pytest.mark.parametrize(
    "params", [{"since": "2026-13-01T00:00:00Z"}, {"limit": "many"}, {"cursor": "e30"}]
)
def test_trades_when_a_parameter_is_bad_then_422(
    api: TestClient, reader: dict[str, str], params: dict[str, Any]
) -> None:
    r = api.get(ROUTE, headers=reader, params=params)
    assert r.status_code == 422, r.text


def test_trades_when_no_token_then_401(api: TestClient) -> None:
    assert api.get(ROUTE).status_code == 401
