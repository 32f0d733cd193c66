"""GET /api/v1/metrics/trading: how the account is doing, from the ledger (scope read).

Sharpe and Sortino (annualised, of the daily returns), maximum and current drawdown, the win
rate of the closed round trips, P&L per UTC day and ISO week, per symbol and in total, and the
equity curve with its drawdown (at each fill and each day's end) for the dashboard. Figures are
services/trading_metrics.py's; money is a decimal string, ratios are numbers (null where
undefined), drawdowns are fractions. Not Prometheus's /metrics: that one is outside /api/v1.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from services.trading_metrics import PeriodPnl, SymbolMetrics, TradingMetrics, trading_metrics
from serving.auth import ReadToken
from serving.deps import api_of
from serving.json import json_response
from serving.listing import AUTH_RESPONSES, decimal_text, optional_decimal

router = APIRouter(prefix="/metrics", tags=["metrics"])


class SymbolOut(BaseModel):
    symbol: str
    pnl: str
    realised: str
    unrealised: str
    fees: str
    quantity: str
    mark: str | None
    trades: int
    wins: int
    losses: int
    win_rate: float | None


class PeriodOut(BaseModel):
    period: str
    start: str
    pnl: str
    per_symbol: dict[str, str]
    equity: str


class EquityOut(BaseModel):
    time: str
    equity: str
    drawdown: float


class TradingMetricsOut(BaseModel):
    as_of: str
    starting_cash: str
    equity: str
    pnl: str
    realised: str
    unrealised: str
    fees: str
    sharpe: float | None
    sortino: float | None
    max_drawdown: float
    current_drawdown: float
    win_rate: float | None
    trades: int
    wins: int
    losses: int
    per_symbol: list[SymbolOut]
    daily: list[PeriodOut]
    weekly: list[PeriodOut]
    equity_curve: list[EquityOut]


def symbol_json(s: SymbolMetrics) -> dict[str, Any]:
    return {
        "symbol": s.symbol,
        "pnl": decimal_text(s.pnl),
        "realised": decimal_text(s.realised),
        "unrealised": decimal_text(s.unrealised),
        "fees": decimal_text(s.fees),
        "quantity": decimal_text(s.quantity),
        "mark": optional_decimal(s.mark),
        "trades": s.trades,
        "wins": s.wins,
        "losses": s.losses,
        "win_rate": s.win_rate,
    }


def period_json(p: PeriodPnl) -> dict[str, Any]:
    return {
        "period": p.label,
        "start": p.start.isoformat(),
        "pnl": decimal_text(p.pnl),
        "per_symbol": {s: decimal_text(v) for s, v in sorted(p.per_symbol.items())},
        "equity": decimal_text(p.equity),
    }


def metrics_json(m: TradingMetrics) -> dict[str, Any]:
    money = ("starting_cash", "equity", "pnl", "realised", "unrealised", "fees")
    numbers = ("sharpe", "sortino", "max_drawdown", "current_drawdown", "win_rate")
    return {
        "as_of": m.as_of.isoformat(),
        **{name: decimal_text(getattr(m, name)) for name in money},
        **{name: getattr(m, name) for name in (*numbers, "trades", "wins", "losses")},
        "per_symbol": [symbol_json(s) for s in m.per_symbol],
        "daily": [period_json(p) for p in m.daily],
        "weekly": [period_json(p) for p in m.weekly],
        "equity_curve": [
            {"time": p.time.isoformat(), "equity": decimal_text(p.equity), "drawdown": p.drawdown}
            for p in m.equity_curve
        ],
    }


@router.get("/trading", responses={200: {"model": TradingMetricsOut}, **AUTH_RESPONSES})
async def trading(request: Request, _: ReadToken) -> Response:
    api = api_of(request)
    s = api.settings
    # Every fill and the candles since the first: the thread pool, whatever the database.
    figures = await run_in_threadpool(
        trading_metrics, api.ledger, s.account, s.exchange, s.timeframe, api.clock.now()
    )
    return json_response(metrics_json(figures))
