"""Orders of the account: list and read (scope read), place a manual order and cancel one
(scope trade).

A manual order goes through the same risk gate and order manager as a decision's
(services/manual_orders.py). `POST /orders` needs an `Idempotency-Key` header (1 to 255
printable ASCII characters; 400 without one): the same key from the same token with the same
order returns that order (200, `Idempotent-Replayed: true`), never a second one; the same key
with a different order is 409. A refusal by the risk gate is 422 with the denial codes, and
records and sends nothing (the key stays free). Placing and cancelling talk to the broker and
write the ledger: they run in the thread pool, never on the event loop.
"""

from __future__ import annotations

import json
import threading
from dataclasses import fields
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool

from core.auth import ApiToken
from core.browse import OrderLine, OrderQuery
from core.errors import ExchangeError, RetryableExchangeError
from core.orders import Order, OrderOrigin, OrderStatus, OrderType
from core.records import StoredOrder
from core.types import Side, Symbol
from services import bootstrap
from services.manual_orders import (
    IdempotencyConflict,
    ManualOrderRequest,
    ManualOrders,
    NotCancellable,
    OrderNotFound,
    Placed,
    RiskRefused,
)
from serving.auth import ReadToken, TradeToken
from serving.deps import Api, api_of
from serving.json import json_response
from serving.listing import (
    AUTH_RESPONSES,
    SYMBOL_PATTERN,
    DenialOut,
    ErrorOut,
    Limit,
    PageCursor,
    Since,
    SymbolFilter,
    decimal_text,
    iso,
    listing,
    optional_decimal,
)

router = APIRouter(prefix="/orders", tags=["orders"])

Amount = Annotated[Decimal, Field(gt=0, lt=Decimal("1e12"), decimal_places=18, allow_inf_nan=False)]
KEY_HEADER = "Idempotency-Key"


class OrderIn(BaseModel):
    """A manual order: market by default; a limit order names its limit price."""

    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(max_length=32, pattern=SYMBOL_PATTERN, examples=["BTC/USDT"])
    side: Side
    quantity: Amount = Field(description="In the base asset, a multiple of its amount step.")
    type: OrderType = OrderType.MARKET
    limit_price: Amount | None = None

    @model_validator(mode="after")
    def _limit_price_with_limit_orders_only(self) -> OrderIn:
        if (self.type is OrderType.LIMIT) != (self.limit_price is not None):
            raise ValueError("a limit order needs limit_price, and only a limit order has one")
        return self

    def request(self) -> ManualOrderRequest:
        return ManualOrderRequest(
            Symbol(self.symbol), self.side, self.quantity, self.type, self.limit_price
        )


class OrderOut(BaseModel):
    client_order_id: str
    decision_id: str | None
    origin: OrderOrigin
    symbol: str
    side: Side
    type: OrderType
    status: OrderStatus
    quantity: str
    limit_price: str | None
    filled_quantity: str
    average_price: str | None
    created_at: str
    updated_at: str | None
    market_time: str
    broker: str | None
    submit_attempts: int | None
    error: str | None


class OrdersPage(BaseModel):
    orders: list[OrderOut]
    next_cursor: str | None


class NotCancellableOut(OrderOut):
    detail: str


class RefusedOut(BaseModel):
    detail: str
    denials: list[DenialOut]


def order_json(order: Order, stored: StoredOrder | None = None) -> dict[str, Any]:
    return {
        "client_order_id": order.client_order_id,
        "decision_id": order.decision_id,
        "origin": order.origin.value,
        "symbol": order.symbol,
        "side": order.side.value,
        "type": order.order_type.value,
        "status": order.status.value,
        "quantity": decimal_text(order.quantity),
        "limit_price": optional_decimal(order.limit_price),
        "filled_quantity": decimal_text(order.filled_quantity),
        "average_price": optional_decimal(order.average_price),
        "created_at": order.created_at.isoformat(),
        "updated_at": iso(stored.updated_at) if stored else None,
        "market_time": order.market_time.isoformat(),
        "broker": stored.broker if stored else None,
        "submit_attempts": stored.submit_attempts if stored else None,
        "error": stored.error if stored else None,
    }


def stored_json(stored: StoredOrder) -> dict[str, Any]:
    return order_json(stored.order, stored)


# The answer's names are the listing's, but for `type` (the request's name for it).
LINE_FIELDS = {f.name: "type" if f.name == "order_type" else f.name for f in fields(OrderLine)}


def line_json(o: OrderLine) -> dict[str, Any]:
    """A listed order: the same answer as order_json's, from the listing's text."""
    return {key: getattr(o, name) for name, key in LINE_FIELDS.items()}


@router.get("", responses={200: {"model": OrdersPage}, **AUTH_RESPONSES})
async def list_orders(
    request: Request,
    _: ReadToken,
    status: Annotated[OrderStatus | None, Query(description="Only orders in this state.")] = None,
    symbol: SymbolFilter = None,
    since: Since = None,
    limit: Limit = 50,
    cursor: PageCursor = None,
) -> Response:
    """The account's orders, newest first, a page at a time."""
    api = api_of(request)
    account, query = api.settings.account, OrderQuery(status, symbol, since, limit, cursor)

    def build() -> dict[str, Any]:
        page = api.ledger.browse.orders(account, query)
        return {"orders": [line_json(o) for o in page.items], "next_cursor": page.next_cursor}

    return await listing(request, ("orders", account, query), build)


OrderId = Annotated[str, Path(max_length=64, description="The client order id.")]
NOT_FOUND = {404: {"model": ErrorOut, "description": "No such order in this account."}}


@router.get(
    "/{client_order_id}", responses={200: {"model": OrderOut}, **NOT_FOUND, **AUTH_RESPONSES}
)
async def get_order(request: Request, client_order_id: OrderId, _: ReadToken) -> Response:
    api = api_of(request)
    found = None
    if client_order_id.isprintable():  # a NUL is no id, and PostgreSQL would refuse it
        found = await api.read(api.ledger.browse.order, api.settings.account, client_order_id)
    if found is None:
        return json_response({"detail": f"no order {client_order_id!r}"}, 404)
    return json_response(stored_json(found))


_BUILDING = threading.Lock()


def manual_orders(request: Request) -> ManualOrders:
    """The app's one ManualOrders, built on the first order (its broker with it)."""
    state = request.app.state
    with _BUILDING:
        service: ManualOrders | None = getattr(state, "manual_orders", None)
        if service is None:
            service = state.manual_orders = bootstrap.manual_orders(api_of(request).settings)
    return service


def _valid_key(key: str) -> bool:
    return 0 < len(key) <= 255 and key.isascii() and key.isprintable()


PLACE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": OrderOut,
        "description": "This key's order, placed before.",
        "headers": {
            "Idempotent-Replayed": {
                "description": "`true`: the answer of an earlier request with this key.",
                "schema": {"type": "string"},
            }
        },
    },
    201: {"model": OrderOut, "description": "Placed now."},
    400: {"model": ErrorOut, "description": "No (or a malformed) Idempotency-Key header."},
    409: {"model": ErrorOut, "description": "The key already placed another order."},
    422: {"model": RefusedOut, "description": "Refused by the risk gate, or a bad body."},
    502: {"model": ErrorOut, "description": "The broker refused or failed the request."},
    **AUTH_RESPONSES,
    503: {
        "model": ErrorOut,
        "description": "The broker (or the ledger) did not answer: retry "
        "with the same key after Retry-After seconds.",
    },
}


@router.post("", status_code=201, responses=PLACE_RESPONSES)
async def place_order(
    request: Request,
    body: OrderIn,
    token: TradeToken,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=KEY_HEADER,
            description="Required (400 without): 1 to 255 printable ASCII characters, one per "
            "order; a retry sends the same key and gets the same order.",
        ),
    ] = None,
) -> Response:
    """A manual order, through the risk gate and the order manager, once per key."""
    if idempotency_key is None or not _valid_key(idempotency_key):
        detail = f"{KEY_HEADER} header required: 1 to 255 printable ASCII characters"
        return json_response({"detail": detail}, 400)
    api = api_of(request)
    body = await exact(request)
    try:
        placed = await run_in_threadpool(_place, request, api, token, idempotency_key, body)
    except RiskRefused as exc:
        denials = [{"code": d.code.value, "detail": d.detail} for d in exc.denials]
        return json_response({"detail": str(exc), "denials": denials}, 422)
    except IdempotencyConflict as exc:
        return json_response({"detail": str(exc)}, 409)
    except ExchangeError as exc:  # recorded, not sent: a retry after resume_after sends it
        return _broker_failed(exc, manual_orders(request).config.resume_after)
    answer = await _order_answer(api, placed.order, 201 if placed.created else 200)
    if not placed.created:
        answer.headers["Idempotent-Replayed"] = "true"
    return answer


async def exact(request: Request) -> OrderIn:
    """The body again, its numbers read as decimals: FastAPI reads JSON numbers as floats,
    which would round a quantity or a limit price (67012.123456789012 -> 67012.123456789) and
    let a number with more decimals than allowed through as its nearest float."""
    try:
        return OrderIn.model_validate(json.loads(await request.body(), parse_float=Decimal))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


def _place(request: Request, api: Api, token: ApiToken, key: str, body: OrderIn) -> Placed:
    return manual_orders(request).place(token.token_id, key, body.request(), api.clock)


async def _order_answer(api: Api, order: Order, status: int) -> Response:
    """The order as the ledger has it now, with its bookkeeping."""
    stored = await api.read(api.ledger.browse.order, api.settings.account, order.client_order_id)
    return json_response(stored_json(stored) if stored else order_json(order), status)


def _broker_failed(exc: ExchangeError, retry_after: timedelta | None = None) -> Response:
    """503 when the broker did not answer (the order may be there: a retry looks it up before
    sending anything), 502 when it refused."""
    if isinstance(exc, RetryableExchangeError):
        detail = f"the broker did not answer: {exc}"
        if retry_after is None:
            return json_response({"detail": detail}, 503)
        seconds = int(retry_after.total_seconds())
        answer = json_response({"detail": f"{detail}; retry with the same {KEY_HEADER} after "
                                          f"{seconds} s"}, 503)  # fmt: skip
        answer.headers["Retry-After"] = str(seconds)
        return answer
    return json_response({"detail": f"the broker refused: {exc}"}, 502)


CANCEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": OrderOut, "description": "Cancelled, or cancel_pending at the broker."},
    **NOT_FOUND,
    409: {
        "model": NotCancellableOut,
        "description": "Already final (or being sent): nothing to cancel.",
    },
    502: {"model": ErrorOut, "description": "The broker refused or failed the cancel."},
    **AUTH_RESPONSES,
}


@router.delete("/{client_order_id}", responses=CANCEL_RESPONSES)
async def cancel_order(request: Request, client_order_id: OrderId, _: TradeToken) -> Response:
    """Cancel an open order: unsent ones in the ledger, sent ones at the broker."""
    api = api_of(request)
    if not client_order_id.isprintable():
        return json_response({"detail": f"no order {client_order_id!r}"}, 404)
    try:
        order = await run_in_threadpool(_cancel, request, api, client_order_id)
    except OrderNotFound:
        return json_response({"detail": f"no order {client_order_id!r}"}, 404)
    except NotCancellable as exc:
        return json_response(order_json(exc.order) | {"detail": str(exc)}, 409)
    except ExchangeError as exc:
        return _broker_failed(exc)
    return await _order_answer(api, order, 200)


def _cancel(request: Request, api: Api, client_order_id: str) -> Order:
    return manual_orders(request).cancel(client_order_id, api.clock)
