"""The ccxt broker against ccxt's recorded Binance spot responses (tests/fixtures), parsed by
ccxt's own code; exchange errors go through ccxt's own Binance error mapping."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.clock import FakeClock
from core.errors import FatalExchangeError, RetryableExchangeError
from core.orders import Order, OrderStatus, OrderType
from core.types import ClientOrderId, Side, Symbol
from infra.brokers.ccxt_broker import CcxtBroker
from services.execution import submit_order
from tests.infra.market_data.recorded_binance import HttpError, RecordedSpotBinance
from tests.services.open_book import record_order

T0 = datetime(2025, 1, 23, tzinfo=UTC)
NOT_FOUND = HttpError(400, {"code": -2013, "msg": "Order does not exist."})
SOL = Symbol("SOL/USDT")
LTC = Symbol("LTC/USDT")


def sol_limit_buy() -> Order:
    return Order(
        ClientOrderId("tf-0123456789abcdef"), None, SOL, Side.BUY, Decimal("0.05"), T0, T0,
        order_type=OrderType.LIMIT, limit_price=Decimal("241"),
    )  # fmt: skip


def test_place_when_sent_then_created_with_our_client_id_in_one_request() -> None:
    ex = RecordedSpotBinance()
    placed = CcxtBroker(ex).place(sol_limit_buy())
    assert [m for m, _ in ex.calls] == ["POST"]
    assert "newClientOrderId=tf-0123456789abcdef" in (ex.bodies[0] or "")
    assert (placed.status, placed.exchange_order_id) == (OrderStatus.ACCEPTED, "9780331417")
    assert (placed.quantity, placed.limit_price, placed.filled) == (
        Decimal("0.05"),
        Decimal("241"),
        Decimal(0),
    )


def test_submit_when_not_at_the_exchange_then_looked_up_once_and_sent_once(ledger) -> None:  # type: ignore[no-untyped-def]
    ex = RecordedSpotBinance(answers={"fetchOrder": NOT_FOUND})
    coid = _recorded_sol_order(ledger)
    out = submit_order(ledger, CcxtBroker(ex), coid, FakeClock(T0))
    assert [m for m, _ in ex.calls] == ["GET", "POST"]
    assert "origClientOrderId=" + coid in ex.calls[0][1]
    assert out.status is OrderStatus.ACCEPTED


def test_submit_when_exchange_already_has_the_client_id_then_not_sent_again(ledger) -> None:  # type: ignore[no-untyped-def]
    ex = RecordedSpotBinance()  # fetchOrder answers with the recorded order: it is there
    coid = _recorded_sol_order(ledger)
    submit_order(ledger, CcxtBroker(ex), coid, FakeClock(T0))
    assert [m for m, _ in ex.calls] == ["GET"]


def _recorded_sol_order(ledger) -> ClientOrderId:  # type: ignore[no-untyped-def]
    ledger.accounts.ensure("paper", Decimal(1000), T0)
    return record_order(ledger, "SOL/USDT", 0, qty="0.05", limit="241", at=T0)


def test_get_order_when_recorded_closed_order_then_filled_with_average_price() -> None:
    seen = CcxtBroker(RecordedSpotBinance()).get_order(ClientOrderId("tf-x"), LTC)
    assert seen is not None
    assert (seen.status, seen.filled, seen.average_price) == (
        OrderStatus.FILLED,
        Decimal("0.1"),
        Decimal("90.8"),
    )


def test_get_order_when_unknown_then_none() -> None:
    ex = RecordedSpotBinance(answers={"fetchOrder": NOT_FOUND})
    assert CcxtBroker(ex).get_order(ClientOrderId("tf-x"), LTC) is None


def test_cancel_when_exchange_confirms_then_cancelled() -> None:
    # Binance answers a cancel with the order as it now is: the recorded cancelled spot order.
    cancelled = RecordedSpotBinance().cases["fetchOrders"]["httpResponse"][0]
    ex = RecordedSpotBinance(answers={"cancelOrder": cancelled})
    out = CcxtBroker(ex).cancel(ClientOrderId("tf-x"), LTC)
    assert out.status is OrderStatus.CANCELLED
    assert ex.calls[0][0] == "DELETE"
    assert "origClientOrderId=tf-x" in ex.calls[0][1]


def test_cancel_when_already_filled_then_reports_the_fill_instead_of_failing() -> None:
    ex = RecordedSpotBinance(answers={"cancelOrder": NOT_FOUND})
    out = CcxtBroker(ex).cancel(ClientOrderId("tf-x"), LTC)
    assert out.status is OrderStatus.FILLED


def test_open_orders_fills_and_balances_when_recorded_then_parsed_exactly() -> None:
    broker = CcxtBroker(RecordedSpotBinance())
    [working] = broker.open_orders(LTC)
    assert (working.status, working.quantity, working.limit_price) == (
        OrderStatus.ACCEPTED,
        Decimal("0.2"),
        Decimal("50"),
    )
    [fill] = broker.fills(LTC)
    assert fill.client_order_id == "x-R4BD3S825806ed40c861260428a48c"  # via fetch_order
    assert (fill.side, fill.quantity, fill.price, fill.fee) == (
        Side.SELL,
        Decimal("0.2"),
        Decimal("69.63"),
        Decimal("0.013926"),
    )
    assert fill.fill_id == "binance-309520010"
    balances = broker.balances()
    assert balances["LTC"].total == Decimal("0.919741")
    assert broker.positions([LTC, Symbol("BTC/USDT")]) == {
        LTC: Decimal("0.919741"),
        Symbol("BTC/USDT"): Decimal(0),
    }


INSUFFICIENT = {"code": -2010, "msg": "Account has insufficient balance for requested action."}
BAD_KEY = {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
TOO_MANY = {"code": -1003, "msg": "Too many requests."}
INTERNAL = {"code": -1001, "msg": "Internal error; unable to process your request."}


@pytest.mark.parametrize(
    ("error", "kind", "name"),
    [
        (HttpError(400, INSUFFICIENT), FatalExchangeError, "InsufficientFunds"),
        (HttpError(401, BAD_KEY), FatalExchangeError, "AuthenticationError"),
        (HttpError(429, TOO_MANY), RetryableExchangeError, "DDoSProtection"),
        (HttpError(503, INTERNAL), RetryableExchangeError, "OperationFailed"),
    ],
)
def test_place_when_exchange_refuses_then_error_translated_at_the_boundary(
    error: HttpError, kind: type[Exception], name: str
) -> None:
    ex = RecordedSpotBinance(answers={"fetchOrder": NOT_FOUND, "createOrder": error})
    with pytest.raises(kind, match=f"create_order tf-0123456789abcdef: {name}"):
        CcxtBroker(ex).place(sol_limit_buy())


def test_fills_when_exchange_reports_a_trade_without_price_then_clear_error() -> None:
    [trade] = RecordedSpotBinance().cases["fetchMyTrades"]["httpResponse"]
    ex = RecordedSpotBinance(answers={"fetchMyTrades": [trade | {"price": "0.00000000"}]})
    with pytest.raises(
        FatalExchangeError, match=r"trade payload not understood.*'id': '309520010'"
    ):
        CcxtBroker(ex).fills(LTC)


def test_open_orders_when_exchange_omits_the_side_then_clear_error() -> None:
    [raw] = RecordedSpotBinance().cases["fetchOpenOrders"]["httpResponse"]
    broken = {k: v for k, v in raw.items() if k != "side"}
    with pytest.raises(FatalExchangeError, match=r"order payload not understood.*3811057334"):
        CcxtBroker(RecordedSpotBinance(answers={"fetchOpenOrders": [broken]})).open_orders(LTC)
