"""Open positions of the account, each marked at its symbol's newest candle close, with its
notional and unrealised P&L at that mark (null when no candle of the symbol is stored).
Scope read."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from core.browse import PositionView
from serving.auth import ReadToken
from serving.deps import api_of
from serving.listing import AUTH_RESPONSES, decimal_text, optional_decimal
from serving.page_cache import kept_answer

router = APIRouter(prefix="/positions", tags=["positions"])


class PositionOut(BaseModel):
    symbol: str
    quantity: str
    avg_price: str
    realised_pnl: str
    updated_at: str
    mark_price: str | None
    marked_at: str | None  # the close time of the candle whose close is the mark
    notional: str | None
    unrealised_pnl: str | None


class PositionsOut(BaseModel):
    as_of: str
    positions: list[PositionOut]


def position_json(p: PositionView) -> dict[str, Any]:
    return {
        "symbol": p.symbol,
        "quantity": decimal_text(p.quantity),
        "avg_price": decimal_text(p.avg_price),
        "realised_pnl": decimal_text(p.realised_pnl),
        "updated_at": p.updated_at.isoformat(),
        "mark_price": None if p.mark is None else decimal_text(p.mark.close),
        "marked_at": None if p.mark is None else p.mark.close_time.isoformat(),
        "notional": optional_decimal(p.notional),
        "unrealised_pnl": optional_decimal(p.unrealised_pnl),
    }


@router.get("", responses={200: {"model": PositionsOut}, **AUTH_RESPONSES})
async def positions(request: Request, _: ReadToken) -> Response:
    """Every position held (quantity above zero), by symbol, as of `as_of` (the read's time:
    an answer is kept while nothing has changed, serving/page_cache.py; a new candle writes no
    event, so a mark may lag by the kept answer's age, a second at most)."""
    api = api_of(request)
    s = api.settings

    def build() -> dict[str, Any]:
        as_of = api.clock.now()
        held = api.ledger.browse.positions(s.account, s.exchange, s.timeframe)
        return {"as_of": as_of.isoformat(), "positions": [position_json(p) for p in held]}

    body = await kept_answer(request, ("positions", s.account), build)
    return Response(body, media_type="application/json")
