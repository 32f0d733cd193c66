"""The simulated exchange: fills only at knowable prices, slippage and fees, partial fills from
liquidity, resting limit orders, cancel/fill races, seeded rejections, a book that outlives the
process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from core.candles.bar import Bar
from core.errors import FatalExchangeError
from core.orders import Order, OrderStatus, OrderType, client_order_id_for, decision_id_for
from core.types import Side, Symbol
from infra.brokers.dummy import DummyBroker
from infra.brokers.simulated import SimulatedBroker, SimulationConfig

DECIDED_ON = datetime(2024, 9, 1, 12, tzinfo=UTC)  # candle 12:00 closes at 13:00
CLOSE = DECIDED_ON + timedelta(hours=1)
BTC = Symbol("BTC/USDT")
D = Decimal


def order(side: Side = Side.BUY, qty: str = "0.5", limit: str | None = None, n: int = 0) -> Order:
    did = decision_id_for("paper", "BTC/USDT", "1h", DECIDED_ON + timedelta(minutes=n))
    return Order(
        client_order_id_for(did), did, BTC, side, D(qty), CLOSE, CLOSE,
        order_type=OrderType.LIMIT if limit else OrderType.MARKET,
        limit_price=D(limit) if limit else None,
    )  # fmt: skip


def bar(t: datetime, o: str, h: str, lo: str, c: str, v: str = "1000") -> Bar:
    return Bar(t, D(o), D(h), D(lo), D(c), D(v))


def sim(**kw: object) -> SimulatedBroker:
    return SimulatedBroker(SimulationConfig(**kw))  # type: ignore[arg-type]


def test_market_order_when_next_candle_opens_then_fills_at_open_plus_slippage_and_fee() -> None:
    b = sim(slippage_bps=D(5), fee_rate=D("0.001"), starting_cash=D(100000))
    b.place(order())
    [fill] = b.on_candle(BTC, bar(CLOSE, "60000", "60100", "59900", "60050"))
    assert fill.price == D("60030.00000000")  # 5 bps against a buy
    assert fill.fee == (D("60030") * D("0.5") * D("0.001")).quantize(D("1e-8"))
    assert fill.filled_at == CLOSE
    assert b.get_order(fill.client_order_id, BTC).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert b.balances()["BTC"].total == D("0.5")
    assert b.balances()["USDT"].total == D(100000) - D("30015") - fill.fee


def test_market_order_when_candle_is_the_decided_one_or_another_symbol_then_no_fill() -> None:
    b = sim()
    b.place(order())
    assert b.on_candle(BTC, bar(DECIDED_ON, "1", "1", "1", "1")) == []
    assert b.on_candle(Symbol("ETH/USDT"), bar(CLOSE, "1", "1", "1", "1")) == []
    assert len(b.on_candle(BTC, bar(CLOSE, "100", "100", "100", "100"))) == 1
    assert b.on_candle(BTC, bar(CLOSE + timedelta(hours=1), "100", "100", "100", "100")) == []


def test_market_order_when_liquidity_limited_then_partial_fills_over_candles() -> None:
    b = sim(liquidity=D("0.1"))  # 10% of each candle's volume
    b.place(order(qty="0.5"))
    f1 = b.on_candle(BTC, bar(CLOSE, "100", "100", "100", "100", v="2"))
    f2 = b.on_candle(BTC, bar(CLOSE + timedelta(hours=1), "101", "101", "101", "101", v="2"))
    f3 = b.on_candle(BTC, bar(CLOSE + timedelta(hours=2), "102", "102", "102", "102", v="9"))
    assert [f.quantity for f in f1 + f2 + f3] == [D("0.2"), D("0.2"), D("0.1")]
    assert len({f.fill_id for f in f1 + f2 + f3}) == 3
    seen = b.get_order(f1[0].client_order_id, BTC)
    assert seen is not None
    assert (seen.status, seen.filled) == (OrderStatus.FILLED, D("0.5"))


def test_limit_buy_when_price_never_reaches_it_then_rests_and_fills_when_crossed() -> None:
    b = sim()
    b.place(order(limit="95"))
    assert b.on_candle(BTC, bar(CLOSE, "100", "101", "96", "99")) == []
    assert [o.status for o in b.open_orders()] == [OrderStatus.ACCEPTED]
    [fill] = b.on_candle(BTC, bar(CLOSE + timedelta(hours=1), "99", "99", "94", "95"))
    assert fill.price == D("95")  # at the limit, no slippage
    b.place(order(limit="95", n=1))
    [better] = b.on_candle(BTC, bar(CLOSE + timedelta(hours=2), "90", "96", "89", "92"))
    assert better.price == D("90")  # opened below the limit: filled at the open


def test_limit_sell_when_high_reaches_it_then_fills_at_max_of_open_and_limit() -> None:
    b = sim()
    b.place(order())
    b.on_candle(BTC, bar(CLOSE, "100", "100", "100", "100"))
    b.place(order(Side.SELL, qty="0.5", limit="110", n=1))
    assert b.on_candle(BTC, bar(CLOSE + timedelta(hours=1), "100", "109", "99", "105")) == []
    [fill] = b.on_candle(BTC, bar(CLOSE + timedelta(hours=2), "105", "111", "104", "110"))
    assert (fill.side, fill.price) == (Side.SELL, D("110"))


def test_cancel_when_latency_then_it_races_the_next_candles_fills() -> None:
    b = sim(latency_candles=1, liquidity=D("0.1"))
    o = order(qty="1")
    b.place(o)
    b.on_candle(BTC, bar(CLOSE, "100", "100", "100", "100", v="3"))  # order reaches the book
    b.on_candle(BTC, bar(CLOSE + timedelta(hours=1), "100", "100", "100", "100", v="3"))
    pending = b.cancel(o.client_order_id, BTC)
    assert pending.status is OrderStatus.CANCEL_PENDING
    fills = b.on_candle(BTC, bar(CLOSE + timedelta(hours=2), "100", "100", "100", "100", v="3"))
    assert [f.quantity for f in fills] == [D("0.3")]  # the fill won the race
    final = b.get_order(o.client_order_id, BTC)
    assert final is not None
    assert final.status is OrderStatus.CANCELLED
    assert final.filled == D("0.6")


def test_cancel_when_no_latency_then_cancelled_at_once_and_never_fills() -> None:
    b = sim()
    o = order(limit="50")
    b.place(o)
    assert b.cancel(o.client_order_id, BTC).status is OrderStatus.CANCELLED
    assert b.on_candle(BTC, bar(CLOSE, "40", "40", "40", "40")) == []
    with pytest.raises(FatalExchangeError, match="unknown order"):
        b.cancel(order(n=9).client_order_id, BTC)


def test_place_when_same_client_id_twice_then_one_order() -> None:
    b = sim()
    first = b.place(order())
    assert b.place(order()) == first
    assert len(b.open_orders()) == 1


def test_rejections_when_seeded_then_same_orders_rejected_every_time() -> None:
    def fate(seed: int) -> list[bool]:
        b = sim(reject_rate=0.3, seed=seed)
        out = []
        for n in range(40):
            try:
                b.place(order(n=n))
                out.append(False)
            except FatalExchangeError:
                out.append(True)
        return out

    assert fate(7) == fate(7)
    assert 5 <= sum(fate(7)) <= 20
    assert fate(7) != fate(8)


def test_book_when_state_path_then_a_new_process_sees_the_same_exchange(tmp_path: Path) -> None:
    path = tmp_path / "exchange.json"
    first = SimulatedBroker(SimulationConfig(), state_path=path)
    o = order(qty="0.1")
    first.place(o)
    first.on_candle(BTC, bar(CLOSE, "100", "100", "100", "100"))
    again = SimulatedBroker(SimulationConfig(), state_path=path)  # "after a restart"
    assert again.get_order(o.client_order_id, BTC) == first.get_order(o.client_order_id, BTC)
    assert again.fills(BTC) == first.fills(BTC)
    assert again.positions([BTC]) == {BTC: D("0.1")}


def test_dummy_broker_when_order_placed_then_accepted_recorded_and_never_filled() -> None:
    b = DummyBroker()
    placed = b.place(order())
    assert placed.status is OrderStatus.ACCEPTED
    assert b.place(order()) == placed
    assert b.fills(BTC) == []
    assert b.cancel(placed.client_order_id, BTC).status is OrderStatus.CANCELLED
    assert b.open_orders() == []
