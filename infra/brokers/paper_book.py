"""The paper exchange's book on disk: a SQLite file (WAL) that outlives the process, as a real
exchange's book does, and that every process opening it shares (the flow trades on it, the
API's kill switch cancels on it).

`DiskBook` caches the book (infra.brokers.sim_book) in memory and keeps it equal to the file:
each operation catches up with what other processes wrote, then stores only the rows it
changed. A book written before the SQLite one, a single JSON document, is migrated once.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

from filelock import FileLock

from core.errors import FatalExchangeError
from core.orders import Fill, OrderStatus, OrderType
from core.ports import BrokerOrder
from core.types import ClientOrderId, Side, Symbol
from infra.brokers.sim_book import Book, Resting

_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS orders (key TEXT PRIMARY KEY, seq INTEGER NOT NULL,"
    " ver INTEGER NOT NULL, client_order_id TEXT NOT NULL, exchange_order_id TEXT,"
    " symbol TEXT NOT NULL, side TEXT NOT NULL, status TEXT NOT NULL, quantity TEXT NOT NULL,"
    " filled TEXT NOT NULL, average_price TEXT, limit_price TEXT, market_time TEXT NOT NULL,"
    " order_type TEXT NOT NULL, candles_seen INTEGER NOT NULL,"
    " cancel_requested INTEGER NOT NULL, cancel_wait INTEGER NOT NULL, fills INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS orders_by_ver ON orders (ver)",
    "CREATE TABLE IF NOT EXISTS trades (seq INTEGER PRIMARY KEY, ver INTEGER NOT NULL,"
    " client_order_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,"
    " quantity TEXT NOT NULL, price TEXT NOT NULL, fee TEXT NOT NULL, filled_at TEXT NOT NULL,"
    " fill_id TEXT NOT NULL, fee_in_base INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS assets (asset TEXT PRIMARY KEY, quantity TEXT NOT NULL,"
    " ver INTEGER NOT NULL)",
)
_ORDER_FIELDS = (
    "client_order_id, exchange_order_id, symbol, side, status, quantity, filled, average_price,"
    " limit_price, market_time, order_type, candles_seen, cancel_requested, cancel_wait, fills"
)
_INSERT_ORDER = f"INSERT INTO orders (key, seq, ver, {_ORDER_FIELDS}) VALUES ({'?, ' * 17}?)"
_UPDATE_ORDER = (
    "UPDATE orders SET ver = ?, "
    + ", ".join(f"{name.strip()} = ?" for name in _ORDER_FIELDS.split(","))
    + " WHERE key = ?"
)
_SELECT_ORDERS = f"SELECT key, {_ORDER_FIELDS} FROM orders WHERE ver > ? ORDER BY seq"
_TRADE_FIELDS = (
    "client_order_id, symbol, side, quantity, price, fee, filled_at, fill_id, fee_in_base"
)
_INSERT_TRADE = f"INSERT INTO trades (seq, ver, {_TRADE_FIELDS}) VALUES ({'?, ' * 10}?)"
_SELECT_TRADES = f"SELECT {_TRADE_FIELDS} FROM trades WHERE seq >= ? ORDER BY seq"
_UPSERT_ASSET = (
    "INSERT INTO assets (asset, quantity, ver) VALUES (?, ?, ?)"
    " ON CONFLICT (asset) DO UPDATE SET quantity = excluded.quantity, ver = excluded.ver"
)
_SELECT_ASSETS = "SELECT asset, quantity FROM assets WHERE ver > ? ORDER BY rowid"
_SET_VERSION = "INSERT OR REPLACE INTO meta (name, value) VALUES ('version', ?)"

# What a write may change in an order already on the book; BrokerOrder is frozen, so a changed
# order is a new object and `is` tells it apart without comparing fields.
_State = tuple[BrokerOrder, int, bool, int, int]


def _state(r: Resting) -> _State:
    return (r.order, r.candles_seen, r.cancel_requested, r.cancel_wait, r.fills)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """The book before a write, as much as the write can change: the open orders (only those can
    change; new ones are appended), the counts of orders and trades, the assets."""

    states: dict[str, _State]
    n_orders: int
    n_trades: int
    assets: dict[str, Decimal]

    @classmethod
    def of(cls, book: Book) -> _Snapshot:
        states = {k: _state(book.orders[k]) for keys in book.working.values() for k in keys}
        return cls(states, len(book.orders), len(book.trades), dict(book.assets))

    def changed_orders(self, book: Book) -> tuple[list[tuple[int, str]], list[str]]:
        """(seq, key) of the orders added since, and the keys of the orders changed since."""
        tail = list(islice(reversed(book.orders), len(book.orders) - self.n_orders))
        added = [(self.n_orders + i, key) for i, key in enumerate(reversed(tail))]
        changed = [k for k, state in self.states.items() if _differs(book.orders[k], state)]
        return added, changed


def _differs(r: Resting, before: _State) -> bool:
    return r.order is not before[0] or _state(r)[1:] != before[1:]


class DiskBook:
    """The book in a SQLite file (WAL) that several processes share, cached in memory.

    Each operation is one SQLite transaction. It first reads the version row, O(1); only when
    another process has written since does it load the rows stamped with a newer version, so
    catching up costs what changed, not the book. A write (BEGIN IMMEDIATE: writers queue,
    readers do not wait) then stores only the rows it changed, stamped with the next version.
    SQLite makes each transaction atomic: a killed process leaves the old or the new book.
    synchronous=NORMAL: a committed operation survives the process being killed; a power cut
    may lose the last ones, never the file's consistency.
    """

    def __init__(self, path: Path, fresh: Book) -> None:
        self.path = path
        self.book = Book()
        self.version = 0  # the version of the file that `book` holds; 0: nothing loaded yet
        self.rows_written = 0
        self.rows_loaded = 0
        self._mutex = threading.RLock()  # threads of one process share the cache and connection
        with FileLock(f"{path}.lock"):  # two processes never migrate or create it at once
            _migrate_json_book(path)
            self._conn, self._pid = _connect(path), os.getpid()
            _create(self._conn, fresh)
        self._begin("BEGIN", read_only=True)  # load it now: opening pays for the past, once

    @contextmanager
    def reading(self) -> Iterator[Book]:
        with self._mutex:
            self._begin("BEGIN", read_only=True)
            yield self.book

    @contextmanager
    def writing(self) -> Iterator[Book]:
        with self._mutex:
            self._begin("BEGIN IMMEDIATE", read_only=False)
            before = _Snapshot.of(self.book)
            try:
                yield self.book
            finally:  # an operation that raised may still have changed the book: keep both equal
                self._commit(before)

    def _begin(self, statement: str, read_only: bool) -> None:
        if self._pid != os.getpid():  # a forked child must not share its parent's connection
            self._conn, self._pid = _connect(self.path), os.getpid()
        try:
            self._conn.execute(statement)
            self._catch_up()
            if read_only:
                self._conn.execute("COMMIT")
        except BaseException:
            self._forget()
            raise

    def _catch_up(self) -> None:
        (version,) = self._conn.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()
        if version == self.version:
            return
        if version < self.version:  # the file was replaced by an older one: load it all
            self.book, self.version = Book(), 0
        orders = self._conn.execute(_SELECT_ORDERS, (self.version,)).fetchall()
        trades = self._conn.execute(_SELECT_TRADES, (len(self.book.trades),)).fetchall()
        assets = self._conn.execute(_SELECT_ASSETS, (self.version,)).fetchall()
        for row in orders:
            _merge(self.book, *_resting_of(row))
        self.book.trades.extend(_fill_of(row) for row in trades)
        self.book.assets.update((asset, Decimal(q)) for asset, q in assets)
        self.rows_loaded += len(orders) + len(trades) + len(assets)
        self.version = version

    def _commit(self, before: _Snapshot) -> None:
        try:
            written = _write_changes(self._conn, self.book, before, self.version + 1)
            self._conn.execute("COMMIT")
        except BaseException:
            self._forget()
            raise
        if written:
            self.version += 1
            self.rows_written += written

    def _forget(self) -> None:
        """After a failed transaction the cache may hold what the file does not: drop it, and
        let the next operation load the book afresh."""
        if self._conn.in_transaction:
            self._conn.rollback()
        self.book, self.version = Book(), 0


def _merge(book: Book, key: str, resting: Resting) -> None:
    """Take an order as the file holds it. Closed orders never reopen, so one already held keeps
    its place in `working`, and a new closed one needs none (loading a long past then costs
    the next write nothing); its symbol still takes its place there as `add` would give it, so
    open_orders() lists symbols in the same order in every process."""
    if key in book.orders:
        book.orders[key] = resting
    elif resting.order.status.is_open:
        book.add(key, resting)
    else:
        book.orders[key] = resting
        book.working.setdefault(resting.order.symbol, [])


def _write_changes(conn: sqlite3.Connection, book: Book, before: _Snapshot, ver: int) -> int:
    """Store what changed since `before`, stamped `ver`; the number of rows written."""
    added, changed = before.changed_orders(book)
    trades = book.trades[before.n_trades :]
    assets = [(a, str(q), ver) for a, q in book.assets.items() if before.assets.get(a) is not q]
    if not (added or changed or trades or assets):
        return 0
    rows = [(k, seq, ver, *_order_values(book.orders[k])) for seq, k in added]
    conn.executemany(_INSERT_ORDER, rows)
    conn.executemany(_UPDATE_ORDER, [(ver, *_order_values(book.orders[k]), k) for k in changed])
    conn.executemany(
        _INSERT_TRADE,
        [(before.n_trades + i, ver, *_fill_values(f)) for i, f in enumerate(trades)],
    )
    conn.executemany(_UPSERT_ASSET, assets)
    conn.execute(_SET_VERSION, (ver,))
    return len(added) + len(changed) + len(trades) + len(assets) + 1


def _connect(path: Path, wal: bool = True) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN and COMMIT ourselves, one transaction per operation.
    conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _create(conn: sqlite3.Connection, book: Book) -> None:
    """Create the tables and, in a new file, store `book` as version 1; an existing file is
    left as it is."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA:
            conn.execute(statement)
        if conn.execute("SELECT 1 FROM meta WHERE name = 'version'").fetchone() is None:
            _write_changes(conn, book, _Snapshot({}, 0, 0, {}), 1)
            conn.execute(_SET_VERSION, (1,))  # even a book with nothing in it
        conn.execute("COMMIT")
    except BaseException:
        conn.rollback()
        raise


def _migrate_json_book(path: Path) -> None:
    """A book written before the SQLite one was a single JSON document: convert it once, into a
    new file that replaces it atomically; the JSON stays beside it as `<name>.before-sqlite`."""
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        return
    if not head or head == _SQLITE_MAGIC:
        return  # a new book, or already SQLite
    try:
        book = _book_from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError, ArithmeticError) as e:
        raise FatalExchangeError(
            f"{path}: not a paper exchange book, neither SQLite nor the old JSON ({e!r}); "
            "move it away to start a new book"
        ) from e
    tmp = path.with_name(f"{path.name}.migrating")
    for stale in (tmp, Path(f"{tmp}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)  # a WAL left from another file would be replayed into ours
    conn = _connect(tmp, wal=False)  # rollback journal: after commit, the file is complete
    try:
        _create(conn, book)
    finally:
        conn.close()
    shutil.copyfile(path, path.with_name(f"{path.name}.before-sqlite"))
    os.replace(tmp, path)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _order_values(r: Resting) -> tuple[object, ...]:
    o = r.order
    return (
        o.client_order_id, o.exchange_order_id, o.symbol, o.side.value, o.status.value,
        str(o.quantity), str(o.filled), _text(o.average_price), _text(o.limit_price),
        r.market_time.isoformat(), r.order_type.value, r.candles_seen, int(r.cancel_requested),
        r.cancel_wait, r.fills,
    )  # fmt: skip


def _resting_of(row: Sequence[Any]) -> tuple[str, Resting]:
    key, coid, eid, symbol, side, status, qty, filled, avg, limit, *rest = row
    market_time, order_type, candles_seen, cancel_requested, cancel_wait, fills = rest
    order = BrokerOrder(
        ClientOrderId(coid), eid, Symbol(symbol), Side(side), OrderStatus(status),
        Decimal(qty), Decimal(filled), _decimal(avg), _decimal(limit),
    )  # fmt: skip
    resting = Resting(
        order, datetime.fromisoformat(market_time), OrderType(order_type), candles_seen,
        bool(cancel_requested), cancel_wait, fills,
    )  # fmt: skip
    return key, resting


def _fill_values(f: Fill) -> tuple[object, ...]:
    return (
        f.client_order_id, f.symbol, f.side.value, str(f.quantity), str(f.price), str(f.fee),
        f.filled_at.isoformat(), f.fill_id, int(f.fee_in_base),
    )  # fmt: skip


def _fill_of(row: Sequence[Any]) -> Fill:
    coid, symbol, side, qty, price, fee, filled_at, fill_id, fee_in_base = row
    return Fill(
        ClientOrderId(coid), Symbol(symbol), Side(side), Decimal(qty), Decimal(price),
        Decimal(fee), datetime.fromisoformat(filled_at), fill_id, bool(fee_in_base),
    )  # fmt: skip


# -- the book as it was stored before SQLite: read once, to migrate ------------------------
def _book_from_json(raw: dict[str, Any]) -> Book:
    book = Book()
    for key, r in raw["orders"].items():
        o = r["order"]
        order = BrokerOrder(
            ClientOrderId(o["client_order_id"]), o["exchange_order_id"], Symbol(o["symbol"]),
            Side(o["side"]), OrderStatus(o["status"]), Decimal(o["quantity"]),
            Decimal(o["filled"]), _decimal(o["average_price"]), _decimal(o["limit_price"]),
        )  # fmt: skip
        resting = Resting(
            order, datetime.fromisoformat(r["market_time"]), OrderType(r["order_type"]),
            r["candles_seen"], r["cancel_requested"], r["cancel_wait"], r["fills"],
        )  # fmt: skip
        book.add(key, resting)
    book.trades = [_fill_from_json(f) for f in raw["trades"]]
    book.assets = {k: Decimal(v) for k, v in raw["assets"].items()}
    return book


def _fill_from_json(f: dict[str, Any]) -> Fill:
    return Fill(
        ClientOrderId(f["client_order_id"]), Symbol(f["symbol"]), Side(f["side"]),
        Decimal(f["quantity"]), Decimal(f["price"]), Decimal(f["fee"]),
        datetime.fromisoformat(f["filled_at"]), f["fill_id"],
    )  # fmt: skip
