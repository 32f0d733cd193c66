"""GET /api/v1/positions through the real app over the real ledger (SQLite and PostgreSQL):
what is held, marked at the newest candle close, with its unrealised P&L; scope read."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from core.types import Side
from infra.ledger.ledger import Ledger
from serving.routes.positions import PositionOut, PositionsOut
from tests.infra.ledger.book import BTC, ETH, fill, place, trade
from tests.serving.conftest import NOW
from tests.serving.resources import (  # noqa: F401  fixtures, used by name
    api_fixture,
    conforms,
    ok,
    reader_fixture,
    stored_fixture,
)

ROUTE = "/api/v1/positions"


def test_positions_when_held_then_marked_at_the_newest_close_with_unrealised_pnl(
    api: TestClient, stored: Ledger, reader: dict[str, str]
) -> None:
    trade(stored, BTC, Side.BUY, "0.02", "38000", NOW - timedelta(hours=5), fee="0.76")
    body = ok(api, ROUTE, reader)
    conforms(PositionsOut, body)
    assert body["as_of"] == NOW.isoformat()
    (btc,) = body["positions"]
    conforms(PositionOut, btc)
    assert btc == {
        "symbol": "BTC/USDT", "quantity": "0.02", "avg_price": "38000", "realised_pnl": "-0.76",
        "updated_at": (NOW - timedelta(hours=5)).isoformat(), "mark_price": "40000",
        "marked_at": NOW.isoformat(), "notional": "800", "unrealised_pnl": "40",
    }  # fmt: skip


def test_positions_when_sold_flat_or_none_then_not_listed(
    api: TestClient, stored: Ledger, reader: dict[str, str]
) -> None:
    assert ok(api, ROUTE, reader)["positions"] == []
    bought = place(stored, "eth-in", NOW - timedelta(hours=2), ETH, Side.BUY, "1")
    fill(stored, bought, "1900", NOW - timedelta(hours=2))
    sold = place(stored, "eth-out", NOW - timedelta(hours=1), ETH, Side.SELL, "1")
    fill(stored, sold, "2000", NOW - timedelta(hours=1))
    assert ok(api, ROUTE, reader)["positions"] == []


def test_positions_when_no_token_then_401(api: TestClient) -> None:
    assert api.get(ROUTE).status_code == 401
