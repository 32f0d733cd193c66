"""The API's read models over a real ledger (SQLite and PostgreSQL): pages of orders, trades and
decisions, newest first, keyset cursors that list every row exactly once, filters, positions
marked at the newest close, and candle closes for the trading metrics."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.browse import (
    BadCursor,
    Cursor,
    DecisionQuery,
    Listing,
    OrderLine,
    OrderQuery,
    Page,
    TradeQuery,
)
from core.orders import OrderEvent, OrderOrigin, OrderStatus
from core.types import Action, Side
from infra.ledger.ledger import Ledger
from tests.infra.ledger.book import (
    ACCOUNT,
    BTC,
    ETH,
    EXCHANGE,
    fill,
    hours,
    open_account,
    place,
    store_candles,
)
from tests.services.test_decisions import T, llm_decision, record

T0 = datetime(2026, 11, 20, 8, tzinfo=UTC)
AHEAD = timezone(timedelta(hours=5))
D = Decimal


@pytest.fixture
def book(ledger: Ledger) -> Ledger:
    """Eleven orders, several created at the same instant (ties the cursor must break): BTC
    and ETH, some filled, one never sent; and an order of another account."""
    open_account(ledger)
    for i in range(11):
        symbol = BTC if i % 3 else ETH
        order = place(ledger, f"o-{i:02d}", T0 + hours(i // 3), symbol, accepted=i != 10)
        if i < 4:
            fill(ledger, order, "40000" if symbol == BTC else "2000", T0 + hours(5 + i // 2))
    ledger.accounts.ensure("other", D(1), T0)
    place(ledger, "elsewhere", T0, account="other", accepted=False)
    return ledger


def all_pages(fetch: Callable[[str | None], Page[Any]], key: Callable[[Any], str]) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = fetch(cursor)
        seen += [key(item) for item in page.items]
        if page.next_cursor is None:
            return seen
        assert page.items, "a cursor after an empty page"
        cursor = page.next_cursor


def order_ids(ledger: Ledger, limit: int, **filters: Any) -> list[str]:
    return all_pages(
        lambda c: ledger.browse.orders(ACCOUNT, OrderQuery(limit=limit, cursor=c, **filters)),
        lambda line: line.client_order_id,
    )


def test_orders_when_paged_then_newest_first_ties_by_id_and_only_this_account(
    book: Ledger,
) -> None:
    first = book.browse.orders(ACCOUNT, OrderQuery(limit=4))
    assert [o.client_order_id for o in first.items] == ["o-10", "o-09", "o-08", "o-07"]
    assert first.next_cursor is not None
    assert order_ids(book, 4) == [f"o-{i:02d}" for i in reversed(range(11))]


def test_orders_when_any_page_size_then_every_order_exactly_once(book: Ledger) -> None:
    everything = [f"o-{i:02d}" for i in reversed(range(11))]

    @settings(max_examples=25, deadline=None)
    @given(limit=st.integers(min_value=1, max_value=13))
    def pages_cover_all(limit: int) -> None:
        assert order_ids(book, limit) == everything

    pages_cover_all()


def test_orders_when_filtered_by_status_symbol_and_since_then_only_matching(
    book: Ledger,
) -> None:
    assert order_ids(book, 2, status=OrderStatus.NEW) == ["o-10"]
    assert order_ids(book, 2, status=OrderStatus.FILLED) == ["o-03", "o-02", "o-01", "o-00"]
    assert order_ids(book, 2, symbol=ETH) == ["o-09", "o-06", "o-03", "o-00"]
    assert order_ids(book, 2, since=T0 + hours(3)) == ["o-10", "o-09"]
    assert order_ids(book, 2, symbol="DOGE/USDT") == []


def test_orders_when_a_newer_order_arrives_between_pages_then_the_next_page_is_unchanged(
    book: Ledger,
) -> None:
    first = book.browse.orders(ACCOUNT, OrderQuery(limit=5))
    place(book, "o-late", T0 + hours(10))
    rest = all_pages(
        lambda c: book.browse.orders(ACCOUNT, OrderQuery(limit=5, cursor=c or first.next_cursor)),
        lambda line: line.client_order_id,
    )
    assert [o.client_order_id for o in first.items] + rest == [
        f"o-{i:02d}" for i in reversed(range(11))
    ]


def test_orders_when_listed_then_each_line_says_what_the_stored_order_says(book: Ledger) -> None:
    limited = place(book, "limit", T0 + hours(20), quantity="0.0100", limit_price="39000.50")
    for line in book.browse.orders(ACCOUNT, OrderQuery(limit=20)).items:
        stored = book.browse.order(ACCOUNT, line.client_order_id)
        assert stored is not None
        order = stored.order
        average = order.average_price
        assert line == OrderLine(
            order.client_order_id, order.decision_id, order.origin.value, order.symbol,
            order.side.value, order.order_type.value, order.status.value,
            plain(order.quantity), None if order.limit_price is None else plain(order.limit_price),
            plain(order.filled_quantity), None if average is None else plain(average),
            order.created_at.isoformat(), stored.updated_at.isoformat(),
            order.market_time.isoformat(), stored.broker, stored.submit_attempts, stored.error,
        )  # fmt: skip
    line = book.browse.orders(ACCOUNT, OrderQuery(limit=1)).items[0]
    assert (line.client_order_id, line.quantity, line.limit_price) == (
        limited.client_order_id, "0.01", "39000.5"
    )  # fmt: skip


def test_orders_when_a_time_has_microseconds_then_they_are_kept(book: Ledger) -> None:
    place(book, "precise", T0 + timedelta(hours=30, microseconds=456))
    line = book.browse.orders(ACCOUNT, OrderQuery(limit=1)).items[0]
    assert line.created_at == (T0 + timedelta(hours=30, microseconds=456)).isoformat()
    assert line.created_at.endswith(".000456+00:00")


def plain(value: Decimal) -> str:
    return f"{value.normalize():f}" if value else "0"


def test_order_when_read_then_with_bookkeeping_and_none_for_another_account(book: Ledger) -> None:
    stored = book.browse.order(ACCOUNT, "o-01")
    assert stored is not None
    assert (stored.order.status, stored.order.filled_quantity, stored.broker) == (
        OrderStatus.FILLED, D("0.01"), "paper"
    )  # fmt: skip
    assert stored.order.origin is OrderOrigin.MANUAL
    assert book.browse.order(ACCOUNT, "elsewhere") is None
    assert book.browse.order("other", "elsewhere") is not None
    assert book.browse.order(ACCOUNT, "nope") is None


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "e30",  # {}
        Cursor(Listing.TRADES, T0, "x").encode(),  # another listing's
        "WyJvIiwiMjAyNi0xMS0yMFQwODowMDowMCIsIngiXQ",  # ["o","2026-11-20T08:00:00","x"]: no offset
        Cursor(
            Listing.ORDERS, datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))), "x"
        ).encode(),
        Cursor(Listing.ORDERS, T0, "nul\x00").encode(),
    ],
)
def test_orders_when_cursor_not_handed_out_then_bad_cursor(book: Ledger, cursor: str) -> None:
    with pytest.raises(BadCursor):
        book.browse.orders(ACCOUNT, OrderQuery(cursor=cursor))


def test_trades_when_paged_then_newest_first_with_their_order_and_realised_pnl(
    book: Ledger,
) -> None:
    ids = all_pages(
        lambda c: book.browse.trades(ACCOUNT, TradeQuery(limit=3, cursor=c)),
        lambda t: t.client_order_id,
    )
    assert ids == ["o-03", "o-02", "o-01", "o-00"]
    newest = book.browse.trades(ACCOUNT, TradeQuery(limit=1)).items[0]
    assert (newest.origin, newest.decision_id, newest.price, newest.notional) == (
        "manual", None, "2000", "20"
    )  # fmt: skip
    assert (newest.realised_pnl, newest.fee_in_base) == ("0", False)
    assert newest.filled_at == (T0 + hours(6)).isoformat()
    assert [t.client_order_id for t in book.browse.trades(
        ACCOUNT, TradeQuery(symbol=BTC, since=T0 + hours(6))).items] == ["o-02"]  # fmt: skip


def test_decisions_when_listed_then_votes_and_call_totals_and_calls_only_when_asked(
    ledger: Ledger,
) -> None:
    for k in range(3):
        record(ledger, llm_decision(candle_time=T + timedelta(hours=k)))
    page = ledger.browse.decisions(ACCOUNT, DecisionQuery(limit=2))
    assert [e.record.candle_time for e in page.items] == [T + hours(2), T + hours(1)]
    newest = page.items[0]
    assert (newest.usage.calls, newest.usage.abstentions, newest.usage.cost) == (4, 2, D("0.00032"))
    assert newest.calls == ()
    assert [v.agent for v in newest.record.votes] == ["bull", "bear"]
    rest = ledger.browse.decisions(ACCOUNT, DecisionQuery(limit=2, cursor=page.next_cursor))
    assert ([e.record.candle_time for e in rest.items], rest.next_cursor) == ([T], None)
    full = ledger.browse.decisions(ACCOUNT, DecisionQuery(limit=1, calls=True)).items[0]
    assert [(c.round, c.agent) for c in full.calls] == [(0, "bear"), (0, "bull"), (1, "bear"),
                                                          (1, "bull")]  # fmt: skip
    assert full.usage == newest.usage


def test_decisions_when_filtered_then_by_symbol_action_and_candle_time(ledger: Ledger) -> None:
    for k in range(3):
        record(ledger, llm_decision(candle_time=T + timedelta(hours=k)))

    def times(**filters: Any) -> list[datetime]:
        page = ledger.browse.decisions(ACCOUNT, DecisionQuery(**filters))
        return [e.record.candle_time for e in page.items]

    assert times(symbol=BTC, action=Action.BUY, since=T + hours(1)) == [T + hours(2), T + hours(1)]
    assert times(action=Action.SELL) == []
    assert times(symbol=ETH) == []


def test_positions_when_held_then_marked_at_the_newest_close_with_unrealised_pnl(
    book: Ledger,
) -> None:
    store_candles(book, BTC, ["41000", "42000"], T0)
    positions = {p.symbol: p for p in book.browse.positions(ACCOUNT, EXCHANGE, "1h")}
    btc, eth = positions[BTC], positions[ETH]
    assert (btc.quantity, btc.avg_price, btc.realised_pnl) == (D("0.02"), D("40000"), 0)
    assert btc.mark is not None
    assert (btc.mark.close, btc.mark.close_time) == (D("42000"), T0 + hours(2))
    assert (btc.notional, btc.unrealised_pnl) == (D("840"), D("40"))
    assert (eth.quantity, eth.mark, eth.notional, eth.unrealised_pnl) == (D("0.02"), None, None,
                                                                          None)  # fmt: skip


def test_positions_when_sold_flat_then_not_listed(book: Ledger) -> None:
    sell = place(book, "sell-eth", T0 + hours(8), ETH, Side.SELL, "0.02")
    fill(book, sell, "2100", T0 + hours(8))
    assert [p.symbol for p in book.browse.positions(ACCOUNT, EXCHANGE, "1h")] == [BTC]


def test_last_event_id_when_an_order_or_a_fill_is_written_then_it_moves(ledger: Ledger) -> None:
    open_account(ledger)
    first = ledger.events.last_id()
    order = place(ledger, "n-1", T0, accepted=False)
    placed = ledger.events.last_id()
    ledger.orders.transition(order.client_order_id, OrderEvent.SUBMIT, T0)
    ledger.orders.transition(order.client_order_id, OrderEvent.ACCEPT, T0)
    accepted = ledger.events.last_id()
    fill(ledger, ledger.orders.get(order.client_order_id), "40000", T0)  # type: ignore[arg-type]
    assert first < placed < accepted < ledger.events.last_id()


def test_closes_when_asked_since_then_by_close_time_from_that_moment(ledger: Ledger) -> None:
    store_candles(ledger, BTC, ["1", "2", "3", "4"], T0)
    closes = ledger.browse.closes(EXCHANGE, [BTC, ETH], "1h", T0 + hours(2))
    assert list(closes[BTC].times) == [T0 + hours(n) for n in (2, 3, 4)]
    assert list(closes[BTC].closes) == [D(2), D(3), D(4)]
    assert (list(closes[ETH].times), list(closes[ETH].closes)) == ([], [])
