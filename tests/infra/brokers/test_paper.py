from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from core.orders import Order, OrderStatus, client_order_id_for, decision_id_for
from core.types import Side, Symbol
from infra.brokers.paper import PaperBroker

DECIDED_ON = datetime(2024, 9, 1, 12, tzinfo=UTC)  # candle 12:00 closes at 13:00
CLOSE = DECIDED_ON + timedelta(hours=1)


def order(side: Side = Side.BUY) -> Order:
    did = decision_id_for("paper", "BTC/USDT", "1h", DECIDED_ON)
    return Order(
        client_order_id_for(did), did, Symbol("BTC/USDT"), side, Decimal("0.5"), CLOSE, CLOSE
    )


def test_match_when_next_candle_opens_then_fills_at_open_plus_slippage_and_fee() -> None:
    b = PaperBroker(Decimal("5"), Decimal("0.001"))
    b.place(order())
    [fill] = b.match("BTC/USDT", CLOSE, Decimal("60000"))
    assert fill.price == Decimal("60030.00000000")  # 5 bps against a buy
    assert fill.fee == (Decimal("60030") * Decimal("0.5") * Decimal("0.001")).quantize(
        Decimal("1e-8")
    )
    assert fill.filled_at == CLOSE
    assert b.get_order(fill.client_order_id).status is OrderStatus.FILLED  # type: ignore[union-attr]


def test_match_when_sell_then_slippage_lowers_price() -> None:
    b = PaperBroker(Decimal("10"), Decimal("0"))
    b.place(order(Side.SELL))
    assert b.match("BTC/USDT", CLOSE, Decimal("100"))[0].price == Decimal("99.90000000")


def test_match_when_candle_before_decision_close_then_never_fills() -> None:
    b = PaperBroker(Decimal("5"), Decimal("0.001"))
    b.place(order())
    assert b.match("BTC/USDT", DECIDED_ON, Decimal("1")) == []  # the decided candle's own open
    assert b.match("ETH/USDT", CLOSE, Decimal("1")) == []  # another symbol
    assert len(b.match("BTC/USDT", CLOSE, Decimal("60000"))) == 1
    assert b.match("BTC/USDT", CLOSE + timedelta(hours=1), Decimal("60000")) == []  # once only


def test_place_when_same_client_id_twice_then_one_order() -> None:
    b = PaperBroker(Decimal("5"), Decimal("0.001"))
    first = b.place(order())
    assert b.place(order()) is first
    assert first.status is OrderStatus.SUBMITTED
