"""Manual orders over a real ledger (SQLite and PostgreSQL) and the real simulated exchange:
the decision's risk gate, the order manager's send-once, and one order per Idempotency-Key,
whatever retries, crashes and concurrent requests do."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clock import FakeClock
from core.errors import RetryableExchangeError
from core.orders import Order, OrderOrigin, OrderStatus, OrderType
from core.ports import BrokerOrder
from core.risk.limits import RiskLimits
from core.risk.state import Control
from core.types import ClientOrderId, Side, Symbol
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from infra.ledger.ledger import Ledger
from services.manual_orders import (
    IdempotencyConflict,
    ManualConfig,
    ManualOrderRequest,
    ManualOrders,
    NotCancellable,
    OrderNotFound,
    RiskRefused,
    manual_order_id,
)
from tests.infra.ledger.book import BTC, ETH, fill, open_account, place, store_candles

D = Decimal
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
LIMITS = RiskLimits(
    whitelist=frozenset({BTC, ETH}),
    max_order_notional=D(1500),
    max_position_notional=D(3000),
    max_total_exposure=D(5000),
    max_daily_loss=D(300),
    max_candle_age=timedelta(hours=1, minutes=5),
)
BUY = ManualOrderRequest(BTC, Side.BUY, D("0.02"))  # 800 at the last close, 40000
SMALL = ManualOrderRequest(ETH, Side.BUY, D("0.01"))  # 20: many fit in the limits


class Crash(BaseException):
    """The process dies: nothing catches it."""


class CountingExchange(SimulatedBroker):
    """The simulated exchange, refusing nothing twice on its own (a second place() of a client
    id opens a second order), counting what it is asked; it can die before sending or lose
    the answer of a place."""

    def __init__(self) -> None:
        super().__init__(SimulationConfig(unique_client_ids=False))
        self.places = 0
        self.cancels = 0
        self.die_before_sending = False
        self.lose_answers = 0
        self.slow = False  # a place() takes a while, as a real exchange's round trip does

    def get_order(self, client_order_id: ClientOrderId, symbol: Symbol) -> BrokerOrder | None:
        if self.die_before_sending:
            raise Crash("killed between recording the order and sending it")
        return super().get_order(client_order_id, symbol)

    def place(self, order: Order) -> BrokerOrder:
        self.places += 1
        if self.slow:  # widens the window in which a second sender could slip in
            time.sleep(0.3)
        placed = super().place(order)
        if self.lose_answers:
            self.lose_answers -= 1
            raise RetryableExchangeError("timeout: the answer was lost")
        return placed

    def cancel(self, client_order_id: ClientOrderId, symbol: Symbol) -> BrokerOrder:
        self.cancels += 1
        return super().cancel(client_order_id, symbol)


@pytest.fixture
def market(ledger: Ledger) -> Ledger:
    """The paper account with 10,000 USDT and hourly candles up to the one closing now."""
    open_account(ledger)
    store_candles(ledger, BTC, ["39000", "39500", "40000"], NOW - timedelta(hours=3))
    store_candles(ledger, ETH, ["2000", "2000", "2000"], NOW - timedelta(hours=3))
    return ledger


@pytest.fixture
def exchange() -> CountingExchange:
    return CountingExchange()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def desk(market: Ledger, exchange: CountingExchange) -> ManualOrders:
    config = ManualConfig("paper", "binance", "1h", (BTC, ETH), LIMITS)
    return ManualOrders(market, lambda: exchange, config)


def codes(exc: pytest.ExceptionInfo[RiskRefused]) -> list[str]:
    return [d.code.value for d in exc.value.denials]


def test_place_when_approved_then_recorded_as_manual_and_sent_once(
    desk: ManualOrders, market: Ledger, exchange: CountingExchange, clock: FakeClock
) -> None:
    placed = desk.place("tok1", "key-1", BUY, clock)
    assert placed.created
    order = placed.order
    assert order.client_order_id == manual_order_id("tok1", "key-1")
    assert order.client_order_id.startswith("tf-m-")
    assert len(order.client_order_id) == 33
    assert (order.origin, order.status, order.decision_id) == (
        OrderOrigin.MANUAL, OrderStatus.ACCEPTED, None
    )  # fmt: skip
    assert (order.created_at, order.market_time, order.quantity) == (NOW, NOW, D("0.02"))
    assert market.orders.submit_attempts(order.client_order_id) == 1
    assert exchange.places == 1
    assert exchange.get_order(order.client_order_id, BTC) is not None


def test_place_when_same_key_again_then_the_same_order_and_no_second_broker_call(
    desk: ManualOrders, market: Ledger, exchange: CountingExchange, clock: FakeClock
) -> None:
    first = desk.place("tok1", "key-1", BUY, clock)
    clock.advance(minutes=5)
    again = desk.place("tok1", "key-1", ManualOrderRequest(BTC, Side.BUY, D("0.020")), clock)
    assert (again.created, again.order) == (False, first.order)
    assert exchange.places == 1
    assert exchange.duplicated_orders() == 0
    assert len(market.orders.find("paper")) == 1


def test_place_when_same_key_with_another_order_then_conflict_and_nothing_sent(
    desk: ManualOrders, market: Ledger, exchange: CountingExchange, clock: FakeClock
) -> None:
    desk.place("tok1", "key-1", BUY, clock)
    with pytest.raises(IdempotencyConflict, match="already placed order"):
        desk.place("tok1", "key-1", ManualOrderRequest(BTC, Side.BUY, D("0.03")), clock)
    assert exchange.places == 1
    assert len(market.orders.find("paper")) == 1


def test_place_when_another_token_uses_the_same_key_then_its_own_order(
    desk: ManualOrders, exchange: CountingExchange, clock: FakeClock
) -> None:
    mine = desk.place("tok1", "key-1", BUY, clock).order
    theirs = desk.place("tok2", "key-1", BUY, clock).order
    assert mine.client_order_id != theirs.client_order_id
    assert exchange.places == 2


def test_place_when_kill_switch_active_then_refused_with_its_denial_and_nothing_written(
    desk: ManualOrders, market: Ledger, exchange: CountingExchange, clock: FakeClock
) -> None:
    market.safety.set_control(Control.KILL_SWITCH, True, "ops drill", NOW)
    with pytest.raises(RiskRefused) as refused:
        desk.place("tok1", "key-1", BUY, clock)
    assert codes(refused) == ["TRADING_HALTED"]
    assert "kill_switch: ops drill" in str(refused.value)
    assert market.orders.find("paper") == []
    assert exchange.places == 0
    market.safety.set_control(Control.KILL_SWITCH, False, "drill over", NOW)
    assert desk.place("tok1", "key-1", BUY, clock).created  # the key stayed free


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (ManualOrderRequest(Symbol("DOGE/USDT"), Side.BUY, D("1"), OrderType.LIMIT, D("0.1")),
         ["SYMBOL_NOT_WHITELISTED", "NO_LAST_PRICE"]),
        (ManualOrderRequest(BTC, Side.BUY, D("0.05")), ["ORDER_NOTIONAL_EXCEEDS_MAX"]),
        (ManualOrderRequest(BTC, Side.SELL, D("0.01")), ["NO_POSITION_TO_SELL"]),
        (ManualOrderRequest(BTC, Side.BUY, D("0.000001")), ["AMOUNT_PRECISION"]),
        (ManualOrderRequest(BTC, Side.BUY, D("0.01"), OrderType.LIMIT, D("30000")),
         ["PRICE_SANITY"]),
        (ManualOrderRequest(Symbol("SOL/USDT"), Side.BUY, D("1")),
         ["NO_LAST_PRICE"]),
    ],
)  # fmt: skip
def test_place_when_the_gate_denies_then_refused_with_every_denial_code(
    desk: ManualOrders,
    market: Ledger,
    exchange: CountingExchange,
    clock: FakeClock,
    request_: ManualOrderRequest,
    expected: list[str],
) -> None:
    with pytest.raises(RiskRefused) as refused:
        desk.place("tok1", "key-1", request_, clock)
    assert codes(refused) == expected
    assert market.orders.find("paper") == []
    assert exchange.places == 0


def test_place_when_orders_already_open_then_they_count_against_the_limits(
    desk: ManualOrders, clock: FakeClock
) -> None:
    big = ManualOrderRequest(BTC, Side.BUY, D("0.0375"))  # 1500 at 40000
    desk.place("tok1", "a", big, clock)
    desk.place("tok1", "b", big, clock)
    with pytest.raises(RiskRefused) as refused:  # 4500 of BTC with the first two still open
        desk.place("tok1", "c", big, clock)
    assert codes(refused) == ["POSITION_EXCEEDS_MAX"]


def test_place_when_orders_with_other_keys_arrive_at_once_then_each_judged_after_the_last(
    desk: ManualOrders, market: Ledger, clock: FakeClock
) -> None:
    big = ManualOrderRequest(BTC, Side.BUY, D("0.0375"))  # 1500: two fit the 3000 cap, not three
    start = threading.Barrier(3)
    outcomes: list[str] = []

    def post(key: str) -> None:
        start.wait()
        try:
            desk.place("tok1", key, big, clock)
            outcomes.append("placed")
        except RiskRefused as refused:
            outcomes.append(refused.denials[0].code.value)

    threads = [threading.Thread(target=post, args=(k,)) for k in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(outcomes) == ["POSITION_EXCEEDS_MAX", "placed", "placed"]
    assert len(market.orders.find("paper")) == 2


def test_place_when_the_newest_candle_is_stale_then_refused_as_a_decision_would_be(
    desk: ManualOrders, clock: FakeClock
) -> None:
    clock.advance(hours=2)
    with pytest.raises(RiskRefused) as refused:
        desk.place("tok1", "key-1", BUY, clock)
    assert codes(refused) == ["STALE_CANDLE"]


def test_place_when_crashed_between_recording_and_sending_then_a_retry_sends_it_once(
    desk: ManualOrders, market: Ledger, exchange: CountingExchange, clock: FakeClock
) -> None:
    exchange.die_before_sending = True
    with pytest.raises(Crash):
        desk.place("tok1", "key-1", BUY, clock)
    exchange.die_before_sending = False
    coid = manual_order_id("tok1", "key-1")
    assert market.orders.get(coid).status is OrderStatus.NEW  # type: ignore[union-attr]
    clock.advance(seconds=5)  # too soon: its recording request may still be sending it
    early = desk.place("tok1", "key-1", BUY, clock)
    assert (early.created, early.order.status, exchange.places) == (False, OrderStatus.NEW, 0)
    clock.advance(seconds=30)
    resumed = desk.place("tok1", "key-1", BUY, clock)
    assert (resumed.created, resumed.order.status) == (False, OrderStatus.ACCEPTED)
    assert exchange.places == 1
    assert len(market.orders.find("paper")) == 1


def test_place_when_the_answer_was_lost_then_a_retry_finds_it_at_the_exchange(
    desk: ManualOrders, market: Ledger, exchange: CountingExchange, clock: FakeClock
) -> None:
    exchange.lose_answers = 1
    with pytest.raises(RetryableExchangeError):
        desk.place("tok1", "key-1", BUY, clock)
    clock.advance(minutes=1)
    retried = desk.place("tok1", "key-1", BUY, clock)
    assert retried.order.status is OrderStatus.ACCEPTED
    assert exchange.places == 1
    assert exchange.duplicated_orders() == 0


def test_place_when_recorded_then_kill_switch_before_the_retry_then_cancelled_unsent(
    desk: ManualOrders, market: Ledger, exchange: CountingExchange, clock: FakeClock
) -> None:
    exchange.die_before_sending = True
    with pytest.raises(Crash):
        desk.place("tok1", "key-1", BUY, clock)
    exchange.die_before_sending = False
    market.safety.set_control(Control.KILL_SWITCH, True, "ops drill", NOW)
    clock.advance(minutes=1)
    order = desk.place("tok1", "key-1", BUY, clock).order
    assert order.status is OrderStatus.CANCELLED
    assert exchange.places == 0


def test_place_when_abandoned_too_long_ago_then_cancelled_not_sent_late(
    desk: ManualOrders, market: Ledger, exchange: CountingExchange, clock: FakeClock
) -> None:
    exchange.die_before_sending = True
    with pytest.raises(Crash):
        desk.place("tok1", "key-1", BUY, clock)
    exchange.die_before_sending = False
    clock.advance(minutes=20)
    assert desk.place("tok1", "key-1", BUY, clock).order.status is OrderStatus.CANCELLED
    assert exchange.places == 0


def test_place_when_many_threads_send_one_key_at_once_then_one_order_and_one_broker_call(
    desk: ManualOrders, market: Ledger, exchange: CountingExchange, clock: FakeClock
) -> None:
    n = 8
    exchange.slow = True
    start = threading.Barrier(n)
    results: list[tuple[bool, str]] = []
    errors: list[BaseException] = []

    def post() -> None:
        start.wait()
        try:
            placed = desk.place("tok1", "same-key", BUY, clock)
            results.append((placed.created, placed.order.client_order_id))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=post) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert sorted(created for created, _ in results) == [False] * (n - 1) + [True]
    assert {coid for _, coid in results} == {manual_order_id("tok1", "same-key")}
    assert exchange.places == 1
    assert exchange.duplicated_orders() == 0
    assert len(market.orders.find("paper")) == 1


def test_cancel_when_accepted_at_the_broker_then_cancelled_there(
    desk: ManualOrders, exchange: CountingExchange, clock: FakeClock
) -> None:
    order = desk.place("tok1", "key-1", BUY, clock).order
    cancelled = desk.cancel(order.client_order_id, clock)
    assert cancelled.status is OrderStatus.CANCELLED
    assert exchange.cancels == 1
    seen = exchange.get_order(order.client_order_id, BTC)
    assert seen is not None
    assert seen.status is OrderStatus.CANCELLED


def test_cancel_when_never_sent_then_cancelled_in_the_ledger_without_the_broker(
    desk: ManualOrders, market: Ledger, exchange: CountingExchange, clock: FakeClock
) -> None:
    unsent = place(market, "decided-unsent", NOW, accepted=False, origin=OrderOrigin.DECISION)
    cancelled = desk.cancel(unsent.client_order_id, clock)
    assert cancelled.status is OrderStatus.CANCELLED
    assert exchange.cancels == 0


def test_cancel_when_final_unknown_or_another_accounts_then_refused(
    desk: ManualOrders, market: Ledger, clock: FakeClock
) -> None:
    done = place(market, "done", NOW)
    fill(market, done, "40000", NOW)
    with pytest.raises(NotCancellable, match="is filled"):
        desk.cancel("done", clock)
    with pytest.raises(OrderNotFound):
        desk.cancel("nope", clock)
    market.accounts.ensure("other", D(1), NOW)
    place(market, "theirs", NOW, account="other", accepted=False)
    with pytest.raises(OrderNotFound):
        desk.cancel("theirs", clock)


@settings(max_examples=200, deadline=None)
@given(
    first=st.tuples(st.text(max_size=20), st.text(max_size=300)),
    second=st.tuples(st.text(max_size=20), st.text(max_size=300)),
)
def test_manual_order_id_when_any_token_and_key_then_a_valid_id_one_per_pair(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    made = manual_order_id(*first)
    assert made == manual_order_id(*first)
    assert re.fullmatch(r"tf-m-[0-9a-f]{28}", made)  # within Binance's 36 of [.A-Z:/a-z0-9_-]
    assert (made == manual_order_id(*second)) == (first == second)


def test_place_when_any_key_is_sent_twice_then_one_order(
    desk: ManualOrders, market: Ledger, exchange: CountingExchange, clock: FakeClock
) -> None:
    tokens = iter(range(10_000))  # each example its own token: its keys are new to the ledger

    @settings(max_examples=25, deadline=None)
    @given(key=st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1,
                       max_size=255))  # fmt: skip
    def twice(key: str) -> None:
        token = f"tok{next(tokens)}"
        before = exchange.places
        first = desk.place(token, key, SMALL, clock)
        again = desk.place(token, key, SMALL, clock)
        assert (first.created, again.created) == (True, False)
        assert again.order.client_order_id == first.order.client_order_id
        assert exchange.places == before + 1

    twice()
    assert len(market.orders.find("paper")) == exchange.places


def test_request_when_limit_price_without_limit_type_then_value_error() -> None:
    with pytest.raises(ValueError, match="limit"):
        ManualOrderRequest(BTC, Side.BUY, D(1), OrderType.MARKET, D(1))
    with pytest.raises(ValueError, match="limit"):
        ManualOrderRequest(BTC, Side.BUY, D(1), OrderType.LIMIT)


@pytest.mark.parametrize("stale_reads", [1, 2], ids=["before-the-gate", "inside-the-gate"])
def test_place_when_the_same_key_was_recorded_after_this_request_looked_then_that_order_not_422(
    market: Ledger,
    exchange: CountingExchange,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    stale_reads: int,
) -> None:
    """A retry racing its first request (this worker or another): it must answer the order
    the first one placed, never a refusal caused by that order counting against the limits
    (a client told 422 would place it again under a new key)."""
    config = ManualConfig("paper", "binance", "1h", (BTC, ETH), LIMITS)
    tight = ManualConfig(
        "paper", "binance", "1h", (BTC, ETH), replace(LIMITS, max_position_notional=D(1000))
    )
    first = ManualOrders(market, lambda: exchange, config).place("tok", "k1", BUY, clock)
    real_get, reads = market.orders.get, iter(range(stale_reads))

    def stale_then_real(coid: ClientOrderId) -> Order | None:
        return None if next(reads, None) is not None else real_get(coid)

    monkeypatch.setattr(market.orders, "get", stale_then_real)
    again = ManualOrders(market, lambda: exchange, tight).place("tok", "k1", BUY, clock)

    assert again.created is False
    assert again.order.client_order_id == first.order.client_order_id
    assert exchange.places == 1


def test_cancel_when_the_kill_switch_placed_the_order_then_refused(
    desk: ManualOrders, market: Ledger, clock: FakeClock
) -> None:
    closing = Order(
        ClientOrderId("ks-" + "1" * 32), None, BTC, Side.SELL, D("0.01"), NOW, NOW,
        origin=OrderOrigin.KILL_SWITCH,
    )  # fmt: skip
    market.orders.insert_many([closing], "paper", "paper")

    with pytest.raises(NotCancellable, match="kill switch"):
        desk.cancel(closing.client_order_id, clock)
    assert market.orders.get(closing.client_order_id).status is OrderStatus.NEW  # type: ignore[union-attr]
