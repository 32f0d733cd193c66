"""The trading ledger in memory: the same stores, with the same answers, as the SQL ledger, for
a backtest. A replay decides, sends and fills hundreds of thousands of times; here each step is
a dict or list operation instead of a transaction, and the run is written to the SQL ledger in
bulk at the end (`BacktestRecords`).

Every store mirrors its SQL twin method for method (the same ordering, the same refusals, the
same order state machine and accounting from core); tests run the two side by side.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pandas as pd

from core.candles.gaps import Gap
from core.candles.timeframe import timeframe_delta
from core.decision import Decision
from core.errors import FatalError
from core.holds import HoldDecider, HoldRows
from core.market.order_book import OrderBookSnapshot, PublicTrade
from core.orders import Fill, Order, OrderChange, OrderEvent, OrderStatus, decision_id_for
from core.portfolio import Position, apply_fill, cash_after
from core.ports import DecisionSink
from core.records import (
    AccountRecords,
    CandleGapRecord,
    ControlState,
    DecisionRecord,
    KillSwitchState,
    SafetyEvent,
    StoredOrder,
)
from core.risk.breaker import TradeResult
from core.risk.state import (
    Control,
    SafetyFlags,
    StateChange,
    TradingState,
)
from core.types import ClientOrderId, DecisionId, Side, Symbol, to_decimal
from infra.ledger.accounts import UnknownAccount
from infra.ledger.mappers import decision_of, decision_row
from infra.ledger.orders import UnknownOrder
from infra.ledger.safety import control_event, flags_of, state_change, state_change_event

ZERO = Decimal(0)
_LAST = chr(0x10FFFF)  # sorts after any fill id: (t, _LAST) bounds every fill at t


class MemoryCandles:
    """Candles per (exchange, symbol, timeframe) as frames with float columns, oldest first."""

    def __init__(self) -> None:
        self._frames: dict[tuple[str, str, str], pd.DataFrame] = {}

    def upsert(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        frame: pd.DataFrame,
        gaps: Sequence[Gap] = (),
        gap_policy: str = "keep",
        source: str = "",
        now: datetime | None = None,
    ) -> int:
        key = (exchange, symbol, timeframe)
        old = self._frames.get(key)
        new = frame.loc[:, ["open_time", "open", "high", "low", "close", "volume"]].copy()
        new["is_filled"] = frame.get("is_filled", False)
        merged = new if old is None else pd.concat([old, new])
        merged = merged.drop_duplicates("open_time", keep="first").sort_values("open_time")
        self._frames[key] = merged.reset_index(drop=True)
        return len(merged) - (0 if old is None else len(old))

    def gaps(self, exchange: str, symbol: str, timeframe: str) -> list[CandleGapRecord]:
        return []  # a backtest reads candles that were checked when they were stored

    def _frame(self, exchange: str, symbol: str, timeframe: str) -> pd.DataFrame | None:
        return self._frames.get((exchange, symbol, timeframe))

    def last_time(self, exchange: str, symbol: str, timeframe: str) -> datetime | None:
        frame = self._frame(exchange, symbol, timeframe)
        if frame is None or frame.empty:
            return None
        return frame["open_time"].iloc[-1].to_pydatetime()

    def count(self, exchange: str, symbol: str, timeframe: str) -> int:
        frame = self._frame(exchange, symbol, timeframe)
        return 0 if frame is None else len(frame)

    def load(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        *,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """The newest `limit` candles up to `until` (inclusive), oldest first, as floats."""
        frame = self._frame(exchange, symbol, timeframe)
        if frame is None:
            columns = ["open_time", "open", "high", "low", "close", "volume", "is_filled"]
            return pd.DataFrame(columns=columns)
        if until is not None:
            frame = frame.iloc[: self._end(frame, until)]
        if limit is not None:
            frame = frame.iloc[max(len(frame) - limit, 0) :]
        return frame.reset_index(drop=True)

    def last_close(
        self, exchange: str, symbol: str, timeframe: str, until: datetime | None = None
    ) -> Decimal | None:
        frame = self._frame(exchange, symbol, timeframe)
        if frame is None:
            return None
        end = len(frame) if until is None else self._end(frame, until)
        return None if end == 0 else to_decimal(float(frame["close"].iloc[end - 1]))

    @staticmethod
    def _end(frame: pd.DataFrame, until: datetime) -> int:
        """How many candles opened at or before `until`."""
        opens = frame["open_time"].array.asi8  # type: ignore[attr-defined]
        return int(opens.searchsorted(pd.Timestamp(until).value, side="right"))


@dataclass
class _Account:
    starting_cash: Decimal
    cash: Decimal
    opened_at: datetime
    holdings: dict[str, Decimal]


class MemoryAccounts:
    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {}

    def ensure(
        self,
        account: str,
        starting_cash: Decimal,
        now: datetime,
        holdings: Mapping[str, Decimal] | None = None,
    ) -> bool:
        if account in self._accounts:
            return False
        self._accounts[account] = _Account(starting_cash, starting_cash, now, dict(holdings or {}))
        return True

    def get(self, account: str) -> _Account:
        found = self._accounts.get(account)
        if found is None:
            raise UnknownAccount(f"unknown account {account!r}")
        return found

    def opened_at(self, account: str) -> datetime | None:
        return self.get(account).opened_at

    def names(self) -> list[str]:
        return sorted(self._accounts)

    def holdings(self, account: str) -> dict[str, Decimal]:
        return dict(self.get(account).holdings) if account in self._accounts else {}

    def cash(self, account: str) -> Decimal:
        return self.get(account).cash

    def starting_cash(self, account: str) -> Decimal:
        return self.get(account).starting_cash


@dataclass
class _Kept:
    """An order as the ledger keeps it: the order and its bookkeeping (mutable)."""

    order: Order
    account: str
    broker: str
    updated_at: datetime
    submit_attempts: int = 0
    error: str | None = None


class DecidedCandles:
    """The candle open times (epoch seconds) decided for one account, symbol and timeframe: a
    bit per candle of the grid that starts at the first one seen; a time off that grid or
    before it goes to a set."""

    __slots__ = ("_bits", "_origin", "_other", "_step")

    def __init__(self, origin: int, step: int) -> None:
        self._origin, self._step = origin, step
        self._bits = bytearray()
        self._other: set[int] = set()

    def add(self, seconds: int) -> bool:
        """False when `seconds` was there already."""
        slot, off_grid = divmod(seconds - self._origin, self._step)
        if slot < 0 or off_grid:
            if seconds in self._other:
                return False
            self._other.add(seconds)
            return True
        byte, mask = slot >> 3, 1 << (slot & 7)
        if byte >= len(self._bits):
            self._bits.extend(bytes(max(byte + 1, 2 * len(self._bits)) - len(self._bits)))
        if self._bits[byte] & mask:
            return False
        self._bits[byte] |= mask
        return True

    def add_many(self, seconds: np.ndarray) -> np.ndarray:
        """`add` of each, in order, at once (a backtest hands its holds over in thousands):
        False where a time was there already, or earlier in `seconds`."""
        seconds = np.asarray(seconds, dtype=np.int64)
        slot, off = np.divmod(seconds - self._origin, self._step)
        on = (slot >= 0) & (off == 0)
        fresh = np.zeros(len(seconds), dtype=bool)
        for i in np.flatnonzero(~on).tolist():  # off the grid: rare, one at a time
            fresh[i] = self.add(int(seconds[i]))
        if not on.any():
            return fresh
        slots = slot[on]
        need = (int(slots.max()) >> 3) + 1
        if need > len(self._bits):
            self._bits.extend(bytes(max(need, 2 * len(self._bits)) - len(self._bits)))
        bits = np.frombuffer(self._bits, dtype=np.uint8)  # a view: written through
        byte, mask = slots >> 3, np.left_shift(1, slots & 7).astype(np.uint8)
        first = np.zeros(len(slots), dtype=bool)
        first[np.unique(slots, return_index=True)[1]] = True
        new = first & ((bits[byte] & mask) == 0)
        np.bitwise_or.at(bits, byte[new], mask[new])
        del bits  # the bytearray may grow again only once no view of it is left
        fresh[on] = new
        return fresh


class MemoryOrders:
    def __init__(self) -> None:
        self.decisions_made: dict[DecisionId, tuple[Decision, str]] = {}
        self.stored: dict[ClientOrderId, _Kept] = {}
        self._open: dict[str, dict[ClientOrderId, None]] = {}  # per account, in insert order
        self._last: dict[tuple[str, str, str], datetime] = {}
        self._decided: dict[tuple[str, str, str], DecidedCandles] = {}
        self._other_ids: set[DecisionId] = set()  # ids not made by decision_id_for
        self._held: Counter[str] = Counter()  # actions of the holds decided here
        # With a sink, decisions go there as they are made and are not held here (a long
        # backtest makes more than memory should keep); decisions() and decided_ids() then
        # know only those held.
        self.sink: DecisionSink | None = None

    # -- decisions -------------------------------------------------------------------------
    def record_decision(self, decision: Decision, broker: str) -> bool:
        if not self._first_time(decision):
            return False
        if self.sink is None:
            self.decisions_made[decision.decision_id] = (decision, broker)
        else:
            self.sink.add(decision, broker)
        inp = decision.input
        key = (inp.account, inp.symbol, inp.timeframe)
        if key not in self._last or self._last[key] < inp.candle_time:
            self._last[key] = inp.candle_time
        if decision.order is not None:
            self._add(decision.order, inp.account, broker)
        return True

    def _first_time(self, decision: Decision) -> bool:
        """Record that `decision` was made; False when it had been. An id is one account,
        symbol, timeframe and candle: a bit per candle says it, not a string per decision (a
        set of the ids held 70 MB in an 8-month backtest of 8 pairs)."""
        inp = decision.input
        did = decision.decision_id
        if did != decision_id_for(inp.account, inp.symbol, inp.timeframe, inp.candle_time):
            if did in self._other_ids:
                return False
            self._other_ids.add(did)
            return True
        return self._candle_first_time(
            (inp.account, inp.symbol, inp.timeframe), int(inp.candle_time.timestamp())
        )

    def _candle_first_time(self, key: tuple[str, str, str], seconds: int) -> bool:
        return self._candles(key, seconds).add(seconds)

    def _candles_first_time(self, key: tuple[str, str, str], seconds: np.ndarray) -> np.ndarray:
        return self._candles(key, int(seconds[0])).add_many(seconds)

    def _candles(self, key: tuple[str, str, str], first: int) -> DecidedCandles:
        """The candles decided under `key`, on a grid from `first` when none were."""
        decided = self._decided.get(key)
        if decided is None:
            step = int(timeframe_delta(key[2]).total_seconds())
            decided = self._decided[key] = DecidedCandles(first, step)
        return decided

    def record_holds(self, rows: HoldRows, decide: HoldDecider, broker: str) -> None:
        """The holds not recorded before: to the sink, or decided and held here."""
        if not len(rows):
            return
        keys = [(rows.account, s, rows.timeframe) for s in rows.symbols]
        fresh = np.zeros(len(rows), dtype=bool)
        for k, key in enumerate(keys):
            mine = rows.symbol == k
            if mine.any():
                fresh[mine] = self._candles_first_time(key, rows.opened[mine])
        rows = rows if fresh.all() else rows.take(fresh)
        for k, key in enumerate(keys):
            mine = rows.opened[rows.symbol == k]
            if len(mine):
                newest = datetime.fromtimestamp(int(mine.max()), UTC)
                if key not in self._last or self._last[key] < newest:
                    self._last[key] = newest
        if self.sink is not None:
            self.sink.add_holds(rows, decide, broker)
            return
        for d in decide.decisions(rows):
            self.decisions_made[d.decision_id] = (d, broker)
            self._held[d.consensus.action.value] += 1

    def hold_actions(self) -> Counter[str]:
        counts, self._held = self._held, Counter()
        if self.sink is not None:
            counts.update(self.sink.hold_actions())
        return counts

    def decisions(self, account: str, since: datetime | None = None) -> list[DecisionRecord]:
        chosen = [
            d
            for d, _ in self.decisions_made.values()
            if d.input.account == account and (since is None or d.input.candle_time >= since)
        ]
        chosen.sort(key=lambda d: (d.input.candle_time, d.input.symbol))
        return [decision_of(decision_row(d)) for d in chosen]

    def last_decided(self, account: str, symbol: str, timeframe: str) -> datetime | None:
        return self._last.get((account, symbol, timeframe))

    def decision(self, decision_id: str) -> DecisionRecord | None:
        held = self.decisions_made.get(DecisionId(decision_id))
        return None if held is None else decision_of(decision_row(held[0]))

    def recent_decisions(
        self, account: str, symbol: str, timeframe: str, before: datetime, limit: int
    ) -> list[DecisionRecord]:
        """Those held (none before a backtest starts; the loop keeps its own as it goes)."""
        chosen = sorted(
            (
                d
                for d, _ in self.decisions_made.values()
                if (d.input.account, d.input.symbol, d.input.timeframe)
                == (account, symbol, timeframe)
                and d.input.candle_time < before
            ),
            key=lambda d: d.input.candle_time,
        )[-limit:]
        return [decision_of(decision_row(d)) for d in chosen]

    def decided_ids(self, account: str, timeframe: str, since: datetime) -> set[DecisionId]:
        return {
            i
            for i, (d, _) in self.decisions_made.items()
            if d.input.account == account
            and d.input.timeframe == timeframe
            and d.input.candle_time >= since
        }

    # -- orders ----------------------------------------------------------------------------
    def _add(self, order: Order, account: str, broker: str) -> None:
        self.stored[order.client_order_id] = _Kept(order, account, broker, order.created_at)
        if order.status.is_open:
            self._open.setdefault(account, {})[order.client_order_id] = None

    def _stored(self, client_order_id: ClientOrderId) -> _Kept:
        found = self.stored.get(client_order_id)
        if found is None:
            raise UnknownOrder(f"no order {client_order_id} in the ledger")
        return found

    def _set(self, stored: _Kept, order: Order, now: datetime) -> Order:
        stored.order, stored.updated_at = order, now
        if not order.status.is_open:
            self._open.get(stored.account, {}).pop(order.client_order_id, None)
        return order

    def get(self, client_order_id: ClientOrderId) -> Order | None:
        found = self.stored.get(client_order_id)
        return None if found is None else found.order

    def find(
        self, account: str, status: OrderStatus | None = None, symbol: str | None = None
    ) -> list[Order]:
        return _by_creation(
            s.order
            for s in self.stored.values()
            if s.account == account
            and (status is None or s.order.status is status)
            and (symbol is None or s.order.symbol == symbol)
        )

    def open(self, account: str, symbol: str | None = None) -> list[Order]:
        mine = self._open.get(account)
        if not mine:  # most of a backtest's candles, asked for each symbol
            return []
        orders = (self.stored[c].order for c in mine)
        return _by_creation(o for o in orders if symbol is None or o.symbol == symbol)

    def insert_many(self, orders: Sequence[Order], account: str, broker: str) -> set[str]:
        fresh = [o for o in orders if o.client_order_id not in self.stored]
        for order in fresh:
            self._add(order, account, broker)
        return {o.client_order_id for o in fresh}

    def apply(self, changes: Sequence[OrderChange], now: datetime) -> list[Order]:
        out = []
        for change in changes:
            stored = self._stored(change.client_order_id)
            try:
                order = stored.order
                for event in change.events:
                    order = order.apply(event)
            except FatalError:  # InvalidTransition: left out, as the SQL ledger does
                continue
            stored.error = change.error
            stored.submit_attempts += int(change.sent)
            out.append(self._set(stored, order, now))
        return out

    def submit_attempts(self, client_order_id: ClientOrderId) -> int:
        return self._stored(client_order_id).submit_attempts

    def claim_for_sending(self, client_order_id: ClientOrderId, now: datetime) -> bool:
        stored = self.stored.get(client_order_id)
        if stored is None or stored.order.status is not OrderStatus.NEW:
            return False
        stored.submit_attempts += 1
        stored.updated_at = now
        return True

    def cancel_unsent(self, client_order_id: ClientOrderId, now: datetime, error: str) -> bool:
        stored = self.stored.get(client_order_id)
        if stored is None or stored.order.status is not OrderStatus.NEW or stored.submit_attempts:
            return False
        stored.error = error
        self._set(stored, replace(stored.order, status=OrderStatus.CANCELLED), now)
        return True

    def mark_submitted(self, client_order_id: ClientOrderId, now: datetime) -> Order | None:
        stored = self._stored(client_order_id)
        if stored.order.status is not OrderStatus.NEW:
            return None
        return self._set(stored, stored.order.apply(OrderEvent.SUBMIT), now)

    def transition(
        self,
        client_order_id: ClientOrderId,
        event: OrderEvent,
        now: datetime,
        error: str | None = None,
    ) -> Order:
        stored = self._stored(client_order_id)
        nxt = stored.order.apply(event)  # InvalidTransition propagates, as in SQL
        stored.error = error
        return self._set(stored, nxt, now)

    def fill(self, fill: Fill) -> Order:
        """Move an order by one of its fills (the fill store calls this)."""
        stored = self._stored(fill.client_order_id)
        return self._set(stored, stored.order.fill(fill.quantity, fill.price), fill.filled_at)


def _by_creation(orders: object) -> list[Order]:
    """Oldest first, ties by id: the SQL ledger's order (infra/ledger/orders.py _CREATION)."""
    return sorted(orders, key=lambda o: (o.created_at, o.client_order_id))  # type: ignore[attr-defined, arg-type]


@dataclass
class _AccountFills:
    keys: list[tuple[datetime, str]] = field(default_factory=list)  # (filled_at, fill_id)
    fills: list[tuple[Fill, Decimal]] = field(default_factory=list)  # with realised P&L
    sell_keys: list[tuple[datetime, str]] = field(default_factory=list)
    sells: list[TradeResult] = field(default_factory=list)
    positions: dict[Symbol, Position] = field(default_factory=dict)


class MemoryFills:
    def __init__(self, accounts: MemoryAccounts, orders: MemoryOrders) -> None:
        self._accounts, self._orders = accounts, orders
        self._ids: set[str] = set()
        self._by_account: dict[str, _AccountFills] = {}

    def _of(self, account: str) -> _AccountFills:
        return self._by_account.setdefault(account, _AccountFills())

    def record(self, account: str, fill: Fill) -> bool:
        """Apply a fill to order, position and cash; False if already seen. Checks everything
        before changing anything, as the SQL transaction would roll back."""
        if fill.fill_id in self._ids:
            return False
        if self._orders.get(fill.client_order_id) is None:
            raise UnknownOrder(f"fill {fill.fill_id} for unknown order {fill.client_order_id}")
        book = self._orders.get(fill.client_order_id)
        assert book is not None
        book.fill(fill.quantity, fill.price)  # raises before any change if refused
        acct = self._accounts.get(account)
        mine = self._of(account)
        current = mine.positions.get(fill.symbol, Position(fill.symbol))
        position, realised = apply_fill(current, fill)
        self._orders.fill(fill)
        acct.cash = cash_after(acct.cash, fill)
        mine.positions[fill.symbol] = position
        self._ids.add(fill.fill_id)
        key = (fill.filled_at, fill.fill_id)
        at = bisect.bisect_right(mine.keys, key)
        mine.keys.insert(at, key)
        mine.fills.insert(at, (fill, realised))
        if fill.side is Side.SELL:
            at = bisect.bisect_right(mine.sell_keys, key)
            mine.sell_keys.insert(at, key)
            mine.sells.insert(at, TradeResult(fill.filled_at, realised, fill.price * fill.quantity))
        return True

    def history(
        self, account: str, after: datetime | None = None, until: datetime | None = None
    ) -> list[Fill]:
        """Fills in (after, until], oldest first."""
        mine = self._of(account)
        start = 0 if after is None else bisect.bisect_right(mine.keys, (after, _LAST))
        end = len(mine.keys) if until is None else bisect.bisect_right(mine.keys, (until, _LAST))
        return [f for f, _ in mine.fills[start:end]]

    def realised(self, account: str) -> list[tuple[Fill, Decimal]]:
        """Every fill with its realised P&L, oldest first (what the SQL ledger stores)."""
        return list(self._of(account).fills)

    def count(self, account: str, until: datetime | None = None) -> int:
        mine = self._of(account)
        return len(mine.keys) if until is None else bisect.bisect_right(mine.keys, (until, _LAST))

    def positions(self, account: str) -> dict[Symbol, Position]:
        return dict(self._of(account).positions)

    def closed_trades(
        self, account: str, until: datetime | None = None, limit: int = 500
    ) -> list[TradeResult]:
        mine = self._of(account)
        end = (
            len(mine.sells)
            if until is None
            else bisect.bisect_right(mine.sell_keys, (until, _LAST))
        )
        return mine.sells[max(end - limit, 0) : end]


@dataclass
class _Control:
    control: str
    active: bool
    reason: str | None
    changed_at: datetime
    until: datetime | None


class MemorySafety:
    def __init__(self) -> None:
        self._controls: dict[str, _Control] = {}
        self._events: list[SafetyEvent] = []
        self._state = TradingState.ACTIVE  # the effective state the events last recorded

    def control(self, name: str) -> ControlState | None:
        c = self._controls.get(name)
        return (
            None
            if c is None
            else ControlState(c.control, c.active, c.reason, c.changed_at, c.until)
        )

    def set_control(
        self,
        name: str,
        active: bool,
        reason: str | None,
        now: datetime,
        until: datetime | None = None,
        event: str | None = None,
        detail: Mapping[str, object] | None = None,
    ) -> StateChange | None:
        self._controls[name] = _Control(name, active, reason, now, until)
        self.record_event(name, *control_event(active, reason, event, detail, until), now)
        change = state_change(self.flags(now), self._state, now)
        if change is not None:
            self._state = change.current
            self.record_event(Control.TRADING_STATE.value, *state_change_event(change), now)
        return change

    def record_event(
        self, control: str, step: str, detail: Mapping[str, object], now: datetime
    ) -> None:
        self._events.append(SafetyEvent(now, control, step, dict(detail)))

    def events(self, control: str | None = None, limit: int = 100) -> list[SafetyEvent]:
        chosen = [e for e in self._events if control is None or e.control == control]
        return chosen[-limit:]

    def flags(self, now: datetime | None = None) -> SafetyFlags:
        return flags_of(self._controls, now)

    def kill_switch(self) -> KillSwitchState:
        c = self._controls.get(Control.KILL_SWITCH.value)
        return (
            KillSwitchState(False, None, None)
            if c is None
            else KillSwitchState(c.active, c.reason, c.changed_at)
        )


class MemoryMicrostructure:
    """Order books and public trades: a backtest over candles has none unless given some."""

    def __init__(self) -> None:
        self._books: list[OrderBookSnapshot] = []
        self._trades: dict[tuple[str, str, str], PublicTrade] = {}

    def record_order_book(self, snapshot: OrderBookSnapshot) -> bool:
        self._books.append(snapshot)
        return True

    def order_books(
        self, exchange: str, symbol: str, since: datetime, until: datetime
    ) -> list[OrderBookSnapshot]:
        return sorted(
            (
                b
                for b in self._books
                if b.exchange == exchange and b.symbol == symbol and since <= b.taken_at <= until
            ),
            key=lambda b: b.taken_at,
        )

    def record_trades(self, trades: Sequence[PublicTrade]) -> int:
        fresh = {(t.exchange, t.symbol, t.trade_id): t for t in trades}.items()
        added = 0
        for key, trade in fresh:
            if key not in self._trades:
                self._trades[key] = trade
                added += 1
        return added

    def last_trade_time(self, exchange: str, symbol: str) -> datetime | None:
        times = [
            t.traded_at for (e, s, _), t in self._trades.items() if (e, s) == (exchange, symbol)
        ]
        return max(times, default=None)

    def count_trades(self, exchange: str, symbol: str) -> int:
        return sum((e, s) == (exchange, symbol) for e, s, _ in self._trades)


class MemoryLedger:
    """The stores a decision run uses (core.ports.TradingLedger), in memory; decisions may go
    to a `sink` instead (the SQL ledger, in chunks) so that memory does not grow with them."""

    def __init__(self, sink: DecisionSink | None = None) -> None:
        self.candles = MemoryCandles()
        self.accounts = MemoryAccounts()
        self.orders = MemoryOrders()
        self.orders.sink = sink
        self.fills = MemoryFills(self.accounts, self.orders)
        self.safety = MemorySafety()
        self.microstructure = MemoryMicrostructure()

    def records(self, account: str) -> AccountRecords:
        """Everything `account` recorded, for the SQL ledger's bulk store (decisions sent to
        the sink are flushed there, not repeated here)."""
        if self.orders.sink is not None:
            self.orders.sink.flush()
        acct = self.accounts.get(account)
        decisions = [
            (d, broker)
            for d, broker in self.orders.decisions_made.values()
            if d.input.account == account
        ]
        orders = [
            StoredOrder(s.order, s.broker, s.updated_at, s.submit_attempts, s.error)
            for s in self.orders.stored.values()
            if s.account == account
        ]
        return AccountRecords(
            account=account,
            starting_cash=acct.starting_cash,
            cash=acct.cash,
            opened_at=acct.opened_at,
            decisions=decisions,
            orders=orders,
            fills=self.fills.realised(account),
            positions=self.fills.positions(account),
        )

    def close(self) -> None:
        if self.orders.sink is not None:
            self.orders.sink.close()
