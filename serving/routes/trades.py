"""The account's fills (trades), newest first, each with the order it filled and its realised
P&L (fees included). Filters: symbol, since; keyset pages. Scope read."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from core.browse import TradeLine, TradeQuery
from core.orders import OrderOrigin, OrderType
from core.types import Side
from serving.deps import api_of
from serving.listing import (
    AUTH_RESPONSES,
    Limit,
    PageCursor,
    Reader,
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


def trade_json(t: TradeLine) -> dict[str, Any]:
    return {
        "fill_id": t.fill_id,
        "client_order_id": t.client_order_id,
        "decision_id": t.decision_id,
        "origin": t.origin,
        "order_type": t.order_type,
        "symbol": t.symbol,
        "side": t.side,
        "quantity": t.quantity,
        "price": t.price,
        "notional": t.notional,
        "fee": t.fee,
        "fee_in_base": t.fee_in_base,
        "realised_pnl": t.realised_pnl,
        "filled_at": t.filled_at,
    }


@router.get("", responses={200: {"model": TradesPage}, **AUTH_RESPONSES})
async def trades(
    request: Request,
    _: Reader,
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
