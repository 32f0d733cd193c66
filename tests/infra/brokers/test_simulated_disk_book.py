"""The paper exchange's book on disk: shared by processes (the flow trades on it, the API's kill
switch cancels on it), atomic per operation, read without being rewritten, written by the rows
that changed, and migrated from the JSON book it used to be."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from core.errors import FatalExchangeError
from core.orders import OrderStatus
from core.types import ClientOrderId, Side, Symbol
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from tests.infra.brokers.test_simulated import BTC, CLOSE, D, bar, order

ROOT = Path(__file__).parents[3]


def book(path: Path, **kw: object) -> SimulatedBroker:
    return SimulatedBroker(SimulationConfig(**kw), state_path=path)  # type: ignore[arg-type]


def at(hours: int, price: str = "100", volume: str = "1000") -> object:
    return bar(CLOSE + timedelta(hours=hours), price, price, price, price, volume)


def rows_of_last_write(path: Path) -> int:
    """Rows the latest write stored: each row carries the version of the write that stored it."""
    with closing(sqlite3.connect(path)) as db:
        (version,) = db.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()
        return sum(
            db.execute(f"SELECT count(*) FROM {table} WHERE ver = ?", (version,)).fetchone()[0]
            for table in ("orders", "trades", "assets")
        )


def file_state(path: Path) -> list[tuple[int, int]]:
    files = [path, Path(f"{path}-wal")]
    return [(p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.exists()]


def test_two_brokers_when_one_places_and_the_other_cancels_then_both_see_the_cancel(
    tmp_path: Path,
) -> None:
    flow, api = book(tmp_path / "b.json"), book(tmp_path / "b.json")
    o = order(limit="50")
    flow.place(o)
    assert [x.client_order_id for x in api.open_orders()] == [o.client_order_id]
    assert api.cancel(o.client_order_id, BTC).status is OrderStatus.CANCELLED
    assert flow.open_orders() == []
    assert flow.get_order(o.client_order_id, BTC).status is OrderStatus.CANCELLED  # type: ignore[union-attr]
    assert flow.on_candle(BTC, at(0, "40")) == []  # the cancel holds in the process that placed


def test_two_brokers_when_one_fills_then_the_other_sees_fills_balances_and_positions(
    tmp_path: Path,
) -> None:
    flow, api = book(tmp_path / "b.json"), book(tmp_path / "b.json")
    api.balances()  # cached before the fill: must not answer from the stale cache
    flow.place(order(qty="0.2"))
    fills = flow.on_candle(BTC, at(0))
    assert api.fills(BTC) == fills
    assert api.fills(BTC, since=CLOSE + timedelta(hours=1)) == []
    assert api.balances() == flow.balances()
    assert api.positions([BTC]) == {BTC: D("0.2")}
    assert not api.working(BTC)


def test_two_brokers_when_both_place_then_one_numbering_and_no_second_order_for_one_id(
    tmp_path: Path,
) -> None:
    a, b = book(tmp_path / "b.json"), book(tmp_path / "b.json")
    first = a.place(order(limit="50", n=0))
    second = b.place(order(limit="50", n=1))
    assert b.place(order(limit="50", n=0)) == first  # already on the shared book
    assert (first.exchange_order_id, second.exchange_order_id) == ("sim-1", "sim-2")
    assert a.open_orders() == b.open_orders() == [first, second]
    assert a.duplicated_orders() == 0


def test_two_brokers_when_dup_ids_allowed_then_each_sees_the_other_duplicate(
    tmp_path: Path,
) -> None:
    a = book(tmp_path / "b.json", unique_client_ids=False)
    b = book(tmp_path / "b.json", unique_client_ids=False)
    a.place(order(limit="50"))
    b.place(order(limit="50"))
    assert a.duplicated_orders() == b.duplicated_orders() == 1
    assert len(a.open_orders()) == 2


def test_operations_when_alternating_two_brokers_then_same_results_as_one_in_memory(
    tmp_path: Path,
) -> None:
    kw = {"latency_candles": 1, "liquidity": D("0.1"), "starting_cash": D(100000)}
    memory = SimulatedBroker(SimulationConfig(**kw))  # type: ignore[arg-type]
    a, b = book(tmp_path / "b.json", **kw), book(tmp_path / "b.json", **kw)

    def story(brokers: list[SimulatedBroker]) -> list[object]:
        out: list[object] = []
        for step in range(8):
            x = brokers[step % len(brokers)]
            out.append(x.place(order(qty="0.5", n=step, limit="101" if step % 2 else None)))
            if step == 3:
                out.append(x.cancel(order(n=2).client_order_id, BTC))
            out.append(x.on_candle(BTC, at(step, str(100 + step % 3), volume="3")))
            out.append(x.open_orders())
        return [*out, brokers[0].fills(BTC), brokers[-1].balances()]

    assert story([a, b]) == story([memory])


def test_open_orders_when_book_reopened_then_same_orders_in_the_same_order(
    tmp_path: Path,
) -> None:
    eth = Symbol("ETH/USDT")
    memory, disk = SimulatedBroker(SimulationConfig()), book(tmp_path / "b.json")
    for x in (memory, disk):
        assert not x.working(eth)  # asked before ETH trades: must not move ETH ahead of BTC
        x.place(order(qty="0.1", n=0))
        x.on_candle(BTC, at(0))  # BTC's first order is closed before ETH's arrives
        x.place(replace(order(limit="50", n=1), symbol=eth))
        x.place(order(limit="50", n=2))
    reopened = book(tmp_path / "b.json")
    assert reopened.open_orders() == disk.open_orders() == memory.open_orders()
    assert [o.symbol for o in reopened.open_orders()] == [BTC, eth]


def test_reads_when_called_then_the_file_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    flow = book(path)
    o = order(limit="50")
    flow.place(o)
    flow.on_candle(BTC, at(0))
    api = book(path)
    before = file_state(path)
    written = [x._disk.rows_written for x in (flow, api)]  # type: ignore[union-attr]
    for x in (flow, api):
        x.get_order(o.client_order_id, BTC)
        x.open_orders()
        x.open_orders(BTC)
        x.fills(BTC)
        x.balances()
        x.positions([BTC])
        x.working(BTC)
        x.duplicated_orders()
    assert file_state(path) == before
    assert [x._disk.rows_written for x in (flow, api)] == written  # type: ignore[union-attr]


def test_process_when_killed_then_book_keeps_what_it_returned_and_no_half_write(
    tmp_path: Path,
) -> None:
    """The child places and fills an order, prints what the exchange returned, then is
    SIGKILLed in the middle of its next write: rows stored, not yet committed."""
    path = tmp_path / "b.json"
    book(path)  # this process holds the file open too, as the API does
    child = f"""
import json, os, signal, sys
from infra.brokers import paper_book
from tests.infra.brokers.test_simulated_disk_book import at, book, order, BTC
b = book(paper_book.Path({str(path)!r}))
placed = b.place(order(qty="0.1"))
[fill] = b.on_candle(BTC, at(0))
print(json.dumps([placed.exchange_order_id, fill.fill_id, str(fill.quantity)]), flush=True)
write = paper_book._write_changes
def die_before_commit(*args):
    write(*args)
    os.kill(os.getpid(), signal.SIGKILL)
paper_book._write_changes = die_before_commit
b.place(order(qty="0.1", n=1))
"""
    run = subprocess.run(
        [sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == -9, run.stderr
    exchange_id, fill_id, qty = json.loads(run.stdout)
    after = book(path)
    assert after.get_order(order(qty="0.1").client_order_id, BTC).exchange_order_id == exchange_id  # type: ignore[union-attr]
    assert [(f.fill_id, str(f.quantity)) for f in after.fills(BTC)] == [(fill_id, qty)]
    assert after.get_order(order(n=1).client_order_id, BTC) is None  # the half write is gone
    assert after.place(order(qty="0.1", n=1)).exchange_order_id == "sim-2"


def test_write_when_it_fails_before_commit_then_file_and_cache_keep_the_old_book(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.brokers import paper_book

    a, b = book(tmp_path / "b.json"), book(tmp_path / "b.json")
    a.place(order(limit="50"))
    write = paper_book._write_changes

    def fail_after_writing(*args: object) -> int:
        write(*args)  # type: ignore[arg-type]
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(paper_book, "_write_changes", fail_after_writing)
    with pytest.raises(sqlite3.OperationalError):
        a.cancel(order(limit="50").client_order_id, BTC)
    monkeypatch.undo()
    assert [o.status for o in b.open_orders()] == [OrderStatus.ACCEPTED]
    assert [o.status for o in a.open_orders()] == [OrderStatus.ACCEPTED]  # not its own phantom


def test_broker_when_used_from_another_thread_then_works(tmp_path: Path) -> None:
    b = book(tmp_path / "b.json")
    with ThreadPoolExecutor(2) as pool:  # the API serves requests from a thread pool
        placed = list(pool.map(lambda n: b.place(order(limit="50", n=n)), range(6)))
    assert sorted(o.exchange_order_id or "" for o in placed) == [f"sim-{n}" for n in range(1, 7)]
    assert len(b.open_orders()) == 6


def test_broker_when_process_forks_then_the_child_uses_its_own_connection(
    tmp_path: Path,
) -> None:
    b = book(tmp_path / "b.json")
    b.place(order(limit="50", n=0))
    inherited = b._disk._conn  # type: ignore[union-attr]
    pid = os.fork()
    if pid == 0:  # the child: trades on the book it inherited, then leaves at once
        ok = False
        try:
            b.place(order(limit="50", n=1))
            ok = b._disk._conn is not inherited  # type: ignore[union-attr]
        finally:
            os._exit(0 if ok else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert [o.exchange_order_id for o in b.open_orders()] == ["sim-1", "sim-2"]


# What the book looked like on disk before SQLite (written by the previous SimulatedBroker).
OLD_JSON_BOOK = {
    "orders": {
        "c1": {
            "order": {
                "client_order_id": "c1", "exchange_order_id": "sim-1", "symbol": "BTC/USDT",
                "side": "buy", "status": "filled", "quantity": "0.1", "filled": "0.1",
                "average_price": "100.05000000", "limit_price": None,
            },
            "market_time": "2024-09-01T13:00:00+00:00", "order_type": "market",
            "candles_seen": 1, "cancel_requested": False, "cancel_wait": 0, "fills": 1,
        },
        "c2": {
            "order": {
                "client_order_id": "c2", "exchange_order_id": "sim-2", "symbol": "BTC/USDT",
                "side": "buy", "status": "accepted", "quantity": "0.1", "filled": "0",
                "average_price": None, "limit_price": "50",
            },
            "market_time": "2024-09-01T13:00:00+00:00", "order_type": "limit",
            "candles_seen": 1, "cancel_requested": False, "cancel_wait": 0, "fills": 0,
        },
    },
    "trades": [
        {
            "client_order_id": "c1", "symbol": "BTC/USDT", "side": "buy", "quantity": "0.1",
            "price": "100.05000000", "fee": "0.01000500",
            "filled_at": "2024-09-01T13:00:00+00:00", "fill_id": "c1-1", "fee_in_base": False,
        }
    ],
    "assets": {"USDT": "9989.984995000", "BTC": "0.1"},
}  # fmt: skip


def test_old_json_book_when_opened_then_migrated_once_with_everything_it_held(
    tmp_path: Path,
) -> None:
    path = tmp_path / "paper-exchange.json"
    path.write_text(json.dumps(OLD_JSON_BOOK))
    b = book(path, starting_cash=D(1))  # the book's own cash wins, as before
    assert path.read_bytes().startswith(b"SQLite format 3")
    assert json.loads((tmp_path / "paper-exchange.json.before-sqlite").read_text()) == (
        OLD_JSON_BOOK
    )
    filled = b.get_order(ClientOrderId("c1"), BTC)
    assert filled is not None
    assert (filled.status, filled.average_price) == (OrderStatus.FILLED, D("100.05"))
    assert [o.client_order_id for o in b.open_orders()] == ["c2"]
    [fill] = b.fills(BTC)
    assert (fill.fill_id, fill.side, fill.fee) == ("c1-1", Side.BUY, D("0.010005"))
    assert {a: x.total for a, x in b.balances().items()} == {
        "USDT": D("9989.984995"),
        "BTC": D("0.1"),
    }
    assert b.place(order(limit="50")).exchange_order_id == "sim-3"
    assert len(book(path).open_orders()) == 2  # opened again: read, not migrated again


def test_book_file_when_neither_sqlite_nor_old_json_then_refused_naming_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "paper-exchange.json"
    path.write_text("not a book")
    with pytest.raises(FatalExchangeError, match=re.escape(str(path))):
        book(path)
    assert path.read_text() == "not a book"  # left for a human to look at


def test_writes_when_book_holds_many_past_orders_then_rows_written_and_loaded_stay_the_same(
    tmp_path: Path,
) -> None:
    def one_cycle(past: int) -> tuple[int, int, int]:
        path = tmp_path / f"book-{past}.json"
        flow, api = book(path, starting_cash=D(10**9)), book(path)
        for n in range(past):
            flow.place(order(qty="0.01", n=n))
            flow.on_candle(BTC, at(n))
        api.balances()  # caught up with the past
        loaded = api._disk.rows_loaded  # type: ignore[union-attr]
        flow.place(order(qty="0.01", n=past))
        placed = rows_of_last_write(path)
        flow.on_candle(BTC, at(past))
        matched = rows_of_last_write(path)
        api.get_order(order(n=past).client_order_id, BTC)
        return placed, matched, api._disk.rows_loaded - loaded  # type: ignore[union-attr]

    # place: its order; a fill: the order, the trade, two assets; catching up: the same four
    assert one_cycle(5) == one_cycle(300) == (1, 4, 4)


def test_new_book_when_opened_then_holds_the_starting_cash(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    assert book(path, starting_cash=Decimal(5000)).balances()["USDT"].total == 5000
    assert book(path, starting_cash=Decimal(1)).balances()["USDT"].total == 5000  # not reset
