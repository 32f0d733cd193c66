"""Read models for the API's resources: pages of one account's orders, trades and decisions
(newest first, keyset cursors), positions with their mark, and candle closes for the metrics.

Each call reads on one plain connection (rows as tuples, no ORM bookkeeping), with statements
built once (per filter combination, for the listings). A page asks for one row more than it
shows: that row only says whether there is a next page. Keyset pagination: the next page starts
strictly after the last row's (time, id), so pages never overlap or skip, however many rows
arrive between them. The order and trade listings hand out text (core.browse.OrderLine), made
straight from what the driver returns: no Decimal, datetime or Order per value (measured: a
50-order page costs about a third of what building domain objects did).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Select,
    String,
    and_,
    bindparam,
    or_,
    select,
    type_coerce,
)

from core.agents.calls import AgentCall, AgentUsage, CallOutcome
from core.browse import (
    Closes,
    Cursor,
    DecisionEntry,
    DecisionQuery,
    Listing,
    Mark,
    OrderLine,
    OrderQuery,
    Page,
    PositionView,
    TradeLine,
    TradeQuery,
)
from core.candles.timeframe import timeframe_delta
from core.records import DecisionRecord, StoredOrder
from core.types import Symbol, datetime_to_ms, ms_to_datetime
from infra.ledger.mappers import call_of, decision_of, order_of
from infra.ledger.models import (
    AgentCallRow,
    CandleRow,
    DecisionRow,
    FillRow,
    OrderRow,
    PositionRow,
)
from infra.ledger.sessions import Sessions
from infra.ledger.types import UtcDateTime

T = TypeVar("T")
_O, _F, _D, _C = OrderRow, FillRow, DecisionRow, AgentCallRow


def _raw(column: Any) -> Any:
    """The column as the driver hands it over (SQLite: the stored text; PostgreSQL: a Decimal
    or an aware datetime), without the ledger type's conversion: `_number` and `_time` make
    the API's text of it directly."""
    return type_coerce(column, String)


_ORDER_LINES = select(
    _O.client_order_id, _O.decision_id, _O.origin, _O.symbol, _O.side, _O.order_type,
    _O.status, _raw(_O.quantity), _raw(_O.limit_price), _raw(_O.filled_quantity),
    _raw(_O.filled_cost), _raw(_O.created_at), _raw(_O.updated_at), _raw(_O.market_time),
    _O.broker, _O.submit_attempts, _O.error,
)  # fmt: skip
_TRADE_LINES = select(
    _F.fill_id, _F.client_order_id, _O.decision_id, _O.origin, _O.order_type, _F.symbol,
    _F.side, _raw(_F.quantity), _raw(_F.price), _raw(_F.fee), _F.fee_in_base,
    _raw(_F.realised_pnl), _raw(_F.filled_at),
).join(_O, _O.client_order_id == _F.client_order_id)  # fmt: skip
_ORDER = select(_O).where(
    _O.client_order_id == bindparam("client_order_id"), _O.account == bindparam("account")
)
_DECISIONS = select(_D)
_USAGE = select(_C.decision_id, _C.outcome, _C.tokens_in, _C.tokens_out, _C.cost)
_CALLS = select(_C).order_by(_C.decision_id, _C.round, _C.agent)
_POSITIONS = select(
    PositionRow.symbol, PositionRow.quantity, PositionRow.avg_price, PositionRow.realised_pnl,
    PositionRow.updated_at,
).where(PositionRow.account == bindparam("account")).order_by(PositionRow.symbol)  # fmt: skip
_CANDLE = (
    CandleRow.exchange == bindparam("exchange"),
    CandleRow.symbol == bindparam("symbol"),
    CandleRow.timeframe == bindparam("timeframe"),
)
_NEWEST = (
    select(CandleRow.open_time_ms, CandleRow.close)
    .where(*_CANDLE)
    .order_by(CandleRow.open_time_ms.desc())
    .limit(1)
)
_SINCE = (
    select(CandleRow.open_time_ms, CandleRow.close)
    .where(*_CANDLE, CandleRow.open_time_ms >= bindparam("from_ms"))
    .order_by(CandleRow.open_time_ms)
)
# Per listing: its columns, whose rows they are, its (time, key) order and its filters.
_LISTINGS: dict[Listing, tuple[Select[Any], Any, Any, Any, dict[str, Any]]] = {
    Listing.ORDERS: (_ORDER_LINES, _O.account, _O.created_at, _O.client_order_id,
                     {"status": _O.status, "symbol": _O.symbol}),
    Listing.TRADES: (_TRADE_LINES, _F.account, _F.filled_at, _F.fill_id, {"symbol": _F.symbol}),
    Listing.DECISIONS: (_DECISIONS, _D.account, _D.candle_time, _D.decision_id,
                        {"symbol": _D.symbol, "action": _D.action}),
}  # fmt: skip


@lru_cache(maxsize=64)
def _statement(listing: Listing, filters: tuple[str, ...], since: bool, after: bool) -> Select[Any]:
    """One page of a listing, newest first, for the filters given; built once per shape (a
    statement used again skips SQLAlchemy's compile and cache-key work)."""
    base, owner, time_column, key_column, columns = _LISTINGS[listing]
    q = base.where(owner == bindparam("account"))
    for name in filters:
        q = q.where(columns[name] == bindparam(name))
    if since:
        q = q.where(time_column >= bindparam("since", type_=UtcDateTime()))
    if after:  # strictly older than the cursor's row, in (time desc, key desc) order
        at = bindparam("at", type_=UtcDateTime())
        q = q.where(or_(time_column < at, and_(time_column == at, key_column < bindparam("key"))))
    return q.order_by(time_column.desc(), key_column.desc()).limit(bindparam("limit"))


def _page(
    c: Connection,
    listing: Listing,
    account: str,
    filters: Mapping[str, str | None],
    since: datetime | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Any], bool]:
    """The rows of one page (a row more is asked for: it only tells whether more follow)."""
    given = {k: v for k, v in filters.items() if v is not None}
    params: dict[str, Any] = {"account": account, "limit": limit + 1, **given}
    if since is not None:
        params["since"] = since
    if cursor is not None:
        after = Cursor.decode(cursor, listing)
        params |= {"at": after.at, "key": after.key}
    q = _statement(listing, tuple(sorted(given)), since is not None, cursor is not None)
    rows = c.execute(q, params).all()
    return rows[:limit], len(rows) > limit


def _paged(
    listing: Listing, items: tuple[T, ...], more: bool, key: Callable[[T], tuple[datetime, str]]
) -> Page[T]:
    """The page, with a cursor after its last row when more rows follow."""
    if not more or not items:
        return Page(items, None)
    return Page(items, Cursor(listing, *key(items[-1])).encode())


def _number(value: str | Decimal | None) -> str:
    """A NUMERIC as the API writes it: plain, no trailing zeros, "0" for any zero. SQLite
    hands back the text stored (always plain: format(value, "f")), PostgreSQL a Decimal at the
    column's scale ("0.010000000000000000")."""
    if value is None:
        raise ValueError("a NULL where the ledger keeps a number")
    if value.__class__ is str:
        text = str(value)
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    number = Decimal(value)
    return f"{number.normalize():f}" if number else "0"


def _time(value: str | datetime) -> str:
    """A time as the API writes it (datetime.isoformat in UTC). SQLite hands back the text
    stored, "YYYY-MM-DD HH:MM:SS.ffffff" in UTC; PostgreSQL an aware datetime."""
    if isinstance(value, str):
        fraction = value[19:]
        return f"{value[:10]}T{value[11:19]}{fraction if fraction.strip('.0') else ''}+00:00"
    return value.astimezone(UTC).isoformat()


def _order_line(row: Any) -> OrderLine:
    (coid, decision, origin, symbol, side, kind, status, quantity, limit_price, filled,
     cost, created, updated, market, broker, attempts, error) = row  # fmt: skip
    average = None
    if _number(filled) != "0":
        average = _number(Decimal(cost) / Decimal(filled))
    return OrderLine(
        coid, decision, origin, symbol, side, kind, status, _number(quantity),
        None if limit_price is None else _number(limit_price), _number(filled), average,
        _time(created), _time(updated), _time(market), broker, attempts, error,
    )  # fmt: skip


def _trade_line(row: Any) -> TradeLine:
    (fill_id, coid, decision, origin, kind, symbol, side, quantity, price, fee, in_base,
     realised, filled_at) = row  # fmt: skip
    notional = _number(Decimal(quantity) * Decimal(price))
    return TradeLine(
        fill_id, coid, decision, origin, kind, symbol, side, _number(quantity), _number(price),
        notional, _number(fee), bool(in_base), _number(realised), _time(filled_at),
    )  # fmt: skip


def _stored(row: Any) -> StoredOrder:
    return StoredOrder(order_of(row), row.broker, row.updated_at, row.submit_attempts, row.error)


def _line_key(at: str, key: str) -> tuple[datetime, str]:
    return datetime.fromisoformat(at), key


class Browse:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def orders(self, account: str, query: OrderQuery) -> Page[OrderLine]:
        status = None if query.status is None else query.status.value
        filters = {"status": status, "symbol": query.symbol}
        with self._sessions.connect() as c:
            rows, more = _page(
                c, Listing.ORDERS, account, filters, query.since, query.cursor, query.limit
            )
        items = tuple(_order_line(r) for r in rows)
        return _paged(
            Listing.ORDERS, items, more, lambda o: _line_key(o.created_at, o.client_order_id)
        )

    def order(self, account: str, client_order_id: str) -> StoredOrder | None:
        params = {"client_order_id": client_order_id, "account": account}
        with self._sessions.connect() as c:
            row = c.execute(_ORDER, params).first()
        return None if row is None else _stored(row)

    def trades(self, account: str, query: TradeQuery) -> Page[TradeLine]:
        with self._sessions.connect() as c:
            rows, more = _page(
                c, Listing.TRADES, account, {"symbol": query.symbol}, query.since, query.cursor,
                query.limit,
            )  # fmt: skip
        items = tuple(_trade_line(r) for r in rows)
        return _paged(Listing.TRADES, items, more, lambda t: _line_key(t.filled_at, t.fill_id))

    def decisions(self, account: str, query: DecisionQuery) -> Page[DecisionEntry]:
        action = None if query.action is None else query.action.value
        filters = {"symbol": query.symbol, "action": action}
        with self._sessions.connect() as c:
            rows, more = _page(
                c, Listing.DECISIONS, account, filters, query.since, query.cursor, query.limit
            )
            ids = [r.decision_id for r in rows]
            entries = _with_calls(c, [decision_of(r) for r in rows], ids, query.calls)
        return _paged(
            Listing.DECISIONS, entries, more, lambda d: (d.record.candle_time, d.record.decision_id)
        )

    def positions(self, account: str, exchange: str, timeframe: str) -> list[PositionView]:
        with self._sessions.connect() as c:
            held = [r for r in c.execute(_POSITIONS, {"account": account}) if r.quantity > 0]
            marks = _marks(c, exchange, [r.symbol for r in held], timeframe)
        return [
            PositionView(Symbol(r.symbol), r.quantity, r.avg_price, r.realised_pnl,
                         r.updated_at, marks.get(Symbol(r.symbol)))
            for r in held
        ]  # fmt: skip

    def marks(self, exchange: str, symbols: Sequence[str], timeframe: str) -> dict[Symbol, Mark]:
        with self._sessions.connect() as c:
            return _marks(c, exchange, symbols, timeframe)

    def closes(
        self, exchange: str, symbols: Sequence[str], timeframe: str, since: datetime
    ) -> dict[Symbol, Closes]:
        step = timeframe_delta(timeframe)
        from_ms = datetime_to_ms(since - step)  # the candle closing at `since` opened a step before
        out = {}
        with self._sessions.connect() as c:
            for symbol in symbols:
                key = {"exchange": exchange, "symbol": symbol, "timeframe": timeframe}
                rows = c.execute(_SINCE, key | {"from_ms": from_ms}).all()
                out[Symbol(symbol)] = Closes(
                    Symbol(symbol),
                    tuple(ms_to_datetime(ms) + step for ms, _ in rows),
                    tuple(close for _, close in rows),
                )
        return out


def _marks(
    c: Connection, exchange: str, symbols: Iterable[str], timeframe: str
) -> dict[Symbol, Mark]:
    step = timeframe_delta(timeframe)
    out = {}
    for symbol in symbols:
        key = {"exchange": exchange, "symbol": symbol, "timeframe": timeframe}
        row = c.execute(_NEWEST, key).first()
        if row is not None:
            opened = ms_to_datetime(row.open_time_ms)
            out[Symbol(symbol)] = Mark(Symbol(symbol), opened, opened + step, row.close)
    return out


def _with_calls(
    c: Connection, records: list[DecisionRecord], ids: list[str], full: bool
) -> tuple[DecisionEntry, ...]:
    """Each decision with what its calls came to (one query for the page), and the calls
    themselves, by round then agent, when `full`."""
    if not ids:
        return ()
    calls: defaultdict[str, list[AgentCall]] = defaultdict(list)
    usage: dict[str, AgentUsage] = defaultdict(AgentUsage)
    if full:
        for row in c.execute(_CALLS.where(_C.decision_id.in_(ids))):
            calls[row.decision_id].append(call_of(row))
        for decision_id, made in calls.items():
            usage[decision_id] = AgentUsage.of(made)
    else:
        for decision_id, outcome, tokens_in, tokens_out, cost in c.execute(
            _USAGE.where(_C.decision_id.in_(ids))
        ):
            found = usage[decision_id]
            found.outcomes[CallOutcome(outcome).value] += 1
            found.tokens_in += tokens_in
            found.tokens_out += tokens_out
            found.cost += cost
    return tuple(
        DecisionEntry(
            r, usage.get(r.decision_id) or AgentUsage(), tuple(calls.get(r.decision_id, ()))
        )
        for r in records
    )
