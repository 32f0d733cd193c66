"""The account's fills (trades), newest first, each with the order it filled and its realised
P&L (fees included). Filters: symbol, since; keyset pages. Scope read."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from core.browse import TradeLine, TradeQuery
from core.orders import OrderOrigin, OrderType
from core.types import Side
from serving.auth import ReadToken
from serving.deps import api_of
from serving.listing import (
    AUTH_RESPONSES,
    Limit,
    PageCursor,
    Since,
    SymbolFilter,
    listing,
)

router = APIRouter(prefix="/trades", tags=["trades"])


class TradeOut(BaseModel):
    fill_id: str
    client_order_id: str
    decision_id: str | None
    origin: OrderOrigin
    order_type: OrderType
    symbol: str
    side: Side
    quantity: str
    price: str
    notional: str
    fee: str
    fee_in_base: bool
    realised_pnl: str
    filled_at: str


class TradesPage(BaseModel):
    trades: list[TradeOut]
    next_cursor: str | None


TRADE_FIELDS = tuple(f.name for f in fields(TradeLine))


def trade_json(t: TradeLine) -> dict[str, Any]:
    return {name: getattr(t, name) for name in TRADE_FIELDS}


@router.get("", responses={200: {"model": TradesPage}, **AUTH_RESPONSES})
async def trades(
    request: Request,
    _: ReadToken,
    symbol: SymbolFilter = None,
    since: Since = None,
    limit: Limit = 50,
    cursor: PageCursor = None,
) -> Response:
    api = api_of(request)
    account, query = api.settings.account, TradeQuery(symbol, since, limit, cursor)

    def build() -> dict[str, Any]:
        page = api.ledger.browse.trades(account, query)
        return {"trades": [trade_json(t) for t in page.items], "next_cursor": page.next_cursor}

    return await listing(request, ("trades", account, query), build)
