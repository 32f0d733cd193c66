from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.orders import (
    Fill,
    Order,
    OrderStatus,
    client_order_id_for,
    decision_id_for,
)
from core.portfolio import OverSell, Position, apply_fill, cash_after
from core.types import ClientOrderId, Side, Symbol

T0 = datetime(2024, 9, 1, 12, tzinfo=UTC)


def order(status: OrderStatus = OrderStatus.NEW) -> Order:
    did = decision_id_for("paper", "BTC/USDT", "1h", T0)
    return Order(
        client_order_id_for(did),
        did,
        Symbol("BTC/USDT"),
        Side.BUY,
        Decimal("0.5"),
        T0,
        T0,
        status=status,
    )


def test_client_order_id_when_same_decision_then_same_short_id() -> None:
    a = client_order_id_for(decision_id_for("paper", "BTC/USDT", "1h", T0))
    b = client_order_id_for(decision_id_for("paper", "BTC/USDT", "1h", T0))
    c = client_order_id_for(decision_id_for("paper", "ETH/USDT", "1h", T0))
    assert a == b != c
    assert len(a) <= 36


def fill(side: Side, qty: str, price: str, fee: str = "0") -> Fill:
    return Fill(
        ClientOrderId("c"),
        Symbol("BTC/USDT"),
        side,
        Decimal(qty),
        Decimal(price),
        Decimal(fee),
        T0,
        "f",
    )


def test_apply_fill_when_buy_then_sell_then_exact_realised_pnl() -> None:
    p, r1 = apply_fill(Position(Symbol("BTC/USDT")), fill(Side.BUY, "0.1", "60000.10", "6.00001"))
    p, r2 = apply_fill(p, fill(Side.BUY, "0.2", "60000.40", "12.00008"))
    assert p.avg_price == Decimal("60000.30")
    p, r3 = apply_fill(p, fill(Side.SELL, "0.3", "61000.00", "18.3"))
    assert p.quantity == 0
    assert r3 == Decimal("0.3") * (Decimal("61000.00") - Decimal("60000.30")) - Decimal("18.3")
    assert p.realised_pnl == r1 + r2 + r3


def test_apply_fill_when_selling_more_than_held_then_oversell() -> None:
    with pytest.raises(OverSell):
        apply_fill(Position(Symbol("BTC/USDT")), fill(Side.SELL, "1", "1"))


def test_cash_after_when_buy_and_sell_then_exact_decimal() -> None:
    cash = cash_after(Decimal("100.10"), fill(Side.BUY, "0.1", "0.3", "0.01"))
    assert cash == Decimal("100.10") - Decimal("0.03") - Decimal("0.01")


def test_equity_path_when_buy_then_sell_then_equity_after_each_fill_at_its_prices() -> None:
    from core.portfolio import equity_path

    fills = [
        fill(Side.BUY, "0.1", "60000", "6"),  # cash 3994, holds 0.1 @ 60000 -> 9994
        fill(Side.SELL, "0.1", "61000", "6.1"),  # cash 3994 + 6100 - 6.1, flat
    ]
    assert list(equity_path(Decimal(10000), fills)) == [Decimal("9994"), Decimal("10087.9")]


def test_order_when_a_price_is_given_as_its_quantity_then_refused_not_traded() -> None:
    from core.orders import Order
    from core.types import Price, Quantity

    now = datetime(2024, 9, 1, tzinfo=UTC)
    price, quantity = Price("57012.34"), Quantity("0.01753")
    ok = Order(ClientOrderId("a"), None, Symbol("BTC/USDT"), Side.BUY, quantity, now, now)
    assert isinstance(ok.quantity, Quantity)
    with pytest.raises(TypeError, match=r"a price .* where a quantity belongs"):
        Order(ClientOrderId("b"), None, Symbol("BTC/USDT"), Side.BUY, price, now, now)


def test_apply_fill_when_fee_taken_in_the_base_asset_then_holding_smaller_and_cash_exact() -> None:
    from core.portfolio import EquityCurve

    coid = ClientOrderId("c")
    buy = Fill(coid, Symbol("LTC/USDT"), Side.BUY, Decimal("0.2"), Decimal("69.63"),
               Decimal("0.0002"), T0, "f1", fee_in_base=True)  # fmt: skip
    position, realised = apply_fill(Position(Symbol("LTC/USDT")), buy)
    assert (position.quantity, position.avg_price) == (Decimal("0.1998"), Decimal("69.63"))
    assert realised == Decimal("-0.0002") * Decimal("69.63")  # the fee units, at their cost
    assert cash_after(Decimal(1000), buy) == Decimal("986.074")  # no quote fee
    sell = Fill(coid, Symbol("LTC/USDT"), Side.SELL, Decimal("0.1997"), Decimal("70"),
                Decimal("0.0001"), T0, "f2", fee_in_base=True)  # fmt: skip
    after, gained = apply_fill(position, sell)
    assert after.quantity == 0  # 0.1997 sold + 0.0001 fee = all of it
    assert gained == (Decimal(70) - Decimal("69.63")) * Decimal("0.1997") - Decimal(
        "69.63"
    ) * Decimal("0.0001")
    curve = EquityCurve.starting(Decimal(1000))
    curve.add(buy)
    assert curve.held["LTC/USDT"] == Decimal("0.1998")
    with pytest.raises(OverSell, match="fee included"):
        apply_fill(position, replace(sell, quantity=Decimal("0.1998")))


def test_entry_times_when_flat_then_bought_again_then_the_second_entry_counts() -> None:
    from datetime import timedelta

    from core.portfolio import entry_times

    t0 = datetime(2024, 1, 1, tzinfo=UTC)

    def at(side: Side, qty: str, hours: int) -> Fill:
        return replace(fill(side, qty, "100"), filled_at=t0 + timedelta(hours=hours))

    btc = Symbol("BTC/USDT")
    fills = [
        at(Side.BUY, "1", 0),
        at(Side.BUY, "1", 1),
        at(Side.SELL, "2", 2),
        at(Side.BUY, "1", 5),
    ]
    assert entry_times(fills, [btc]) == {btc: t0 + timedelta(hours=5)}
    assert entry_times(fills[:2], [btc]) == {btc: t0}  # adding to a holding is not a new entry
    assert entry_times(fills[:3], [btc]) == {}  # flat: no holding, no entry
