"""GET /api/v1/metrics/trading through the real app over the real ledger (SQLite and
PostgreSQL): the service's figures as JSON (money as strings, ratios as numbers or null);
an empty ledger answers zeros and nulls; scope read."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from core.types import Side
from infra.ledger.ledger import Ledger
from serving.routes.trading_metrics import EquityOut, PeriodOut, SymbolOut, TradingMetricsOut
from tests.infra.ledger.book import BTC, trade
from tests.serving.conftest import NOW
from tests.serving.resources import (  # noqa: F401  fixtures, used by name
    api_fixture,
    conforms,
    ok,
    reader_fixture,
    stored_fixture,
)

ROUTE = "/api/v1/metrics/trading"


def test_trading_metrics_when_nothing_traded_then_zeros_and_nulls(
    api: TestClient, reader: dict[str, str]
) -> None:
    body = ok(api, ROUTE, reader)
    conforms(TradingMetricsOut, body)
    assert {k: body[k] for k in ("starting_cash", "equity", "pnl", "sharpe", "sortino",
                                 "max_drawdown", "current_drawdown", "win_rate", "trades",
                                 "daily", "weekly", "per_symbol")} == {
        "starting_cash": "10000", "equity": "10000", "pnl": "0", "sharpe": None,
        "sortino": None, "max_drawdown": 0.0, "current_drawdown": 0.0, "win_rate": None,
        "trades": 0, "daily": [], "weekly": [], "per_symbol": [],
    }  # fmt: skip
    assert body["equity_curve"] == [{"time": NOW.isoformat(), "equity": "10000", "drawdown": 0.0}]


def test_trading_metrics_when_a_round_trip_was_closed_then_its_figures(
    api: TestClient, stored: Ledger, reader: dict[str, str]
) -> None:
    trade(stored, BTC, Side.BUY, "0.02", "38000", NOW - timedelta(days=2), fee="0.76")
    trade(stored, BTC, Side.SELL, "0.02", "39000", NOW - timedelta(days=1), fee="0.78")
    body = ok(api, ROUTE, reader)
    conforms(TradingMetricsOut, body)
    assert (body["equity"], body["pnl"], body["realised"], body["fees"]) == (
        "10018.46", "18.46", "18.46", "1.54"
    )  # fmt: skip
    assert (body["trades"], body["wins"], body["win_rate"]) == (1, 1, 1.0)
    (btc,) = body["per_symbol"]
    conforms(SymbolOut, btc)
    assert (btc["symbol"], btc["pnl"], btc["mark"]) == ("BTC/USDT", "18.46", None)
    assert [d["period"] for d in body["daily"]] == ["2026-11-22", "2026-11-23", "2026-11-24"]
    assert [d["pnl"] for d in body["daily"]] == ["-0.76", "19.22", "0"]
    conforms(PeriodOut, body["daily"][0])
    assert [w["period"] for w in body["weekly"]] == ["2026-W47", "2026-W48"]
    conforms(EquityOut, body["equity_curve"][0])
    assert body["equity_curve"][-1] == {"time": NOW.isoformat(), "equity": "10018.46",
                                        "drawdown": 0.0}  # fmt: skip


def test_trading_metrics_when_no_token_then_401(api: TestClient) -> None:
    assert api.get(ROUTE).status_code == 401
