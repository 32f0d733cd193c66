"""Paper exchange book on disk: time per place + on_candle + get_order cycle, by past orders.

Run: .venv/bin/python bench/paper_book.py [--sizes 100 1000 10000]  (from the repo root)

For each size, one book holds that many past orders, each filled (so as many trades), and the
bench times cycles of: place a market order, show the exchange the next candle (it fills), read
the order back. Measured in the same run, on the same starting book:
- old: `JsonRewriteBook`, the reference: the book as it was kept before the SQLite one. Every
  call, reads included, takes the file lock, parses the whole JSON book and writes it all back,
  so a cycle costs O(book) and a long paper run is quadratic;
- new: `SimulatedBroker(state_path=...)`, the SQLite book: one transaction per call, a version
  check for reads, only the changed rows written. It opens the old JSON book, so both start
  from the same content: the last column is what opening costs, once (migrate, then load);
- memory: the in-memory exchange (no state_path) the backtest engine uses, the floor.
Target: the new cost per cycle does not grow with the book; old/new grows with it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from filelock import FileLock

from core.candles.bar import Bar
from core.orders import Order
from core.types import ClientOrderId, Side, Symbol
from infra.brokers.paper_book import _book_from_json
from infra.brokers.sim_book import Book as _Book
from infra.brokers.simulated import SimulatedBroker, SimulationConfig

BTC = Symbol("BTC/USDT")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
CONFIG = SimulationConfig(starting_cash=Decimal(10**9))
CYCLES = 500
PUBLIC = (
    "place", "cancel", "get_order", "open_orders", "duplicated_orders", "fills", "balances",
    "positions", "working", "on_candle",
)  # fmt: skip


class JsonRewriteBook(SimulatedBroker):
    """The reference: the persistent book before SQLite. The in-memory exchange trades; around
    every public call the whole JSON book is read under the file lock and written back."""

    def __init__(self, config: SimulationConfig, path: Path) -> None:
        super().__init__(config)
        self.path = path
        self._lock = FileLock(f"{path}.lock")

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._lock:
            self._book = _book_from_json(json.loads(self.path.read_text()))  # the old loader
            yield
            save_json(self._book, self.path)


def _rewritten(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: JsonRewriteBook, *args: Any, **kwargs: Any) -> Any:
        with self.exclusive():
            return method(self, *args, **kwargs)

    return wrapper


for _name in PUBLIC:
    setattr(JsonRewriteBook, _name, _rewritten(getattr(SimulatedBroker, _name)))


def save_json(book: _Book, path: Path) -> None:
    """The old `_save`, as it was: the whole book, every time."""
    payload = {
        "orders": {
            k: {
                "order": _plain(asdict(r.order)),
                "market_time": r.market_time.isoformat(),
                "order_type": r.order_type.value,
                "candles_seen": r.candles_seen,
                "cancel_requested": r.cancel_requested,
                "cancel_wait": r.cancel_wait,
                "fills": r.fills,
            }
            for k, r in book.orders.items()
        },
        "trades": [_plain(asdict(f)) for f in book.trades],
        "assets": {k: str(v) for k, v in book.assets.items()},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


def _plain(d: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        out[k] = (
            str(v) if isinstance(v, Decimal) else v.isoformat() if isinstance(v, datetime) else v
        )
    return out


def market(n: int) -> Order:
    t = T0 + timedelta(hours=n)
    side = Side.BUY if n % 2 == 0 else Side.SELL  # keeps the holding small and the cash ample
    return Order(ClientOrderId(f"o{n}"), None, BTC, side, Decimal("0.001"), t, t)


def candle(n: int) -> Bar:
    p = Decimal(100 + n % 7)
    return Bar(T0 + timedelta(hours=n), p, p, p, p, Decimal(1000))


def cycles(broker: SimulatedBroker, first: int, count: int) -> float:
    """Seconds per place + on_candle + get_order cycle, over `count` cycles."""
    started = time.perf_counter()
    for n in range(first, first + count):
        placed = broker.place(market(n))
        assert broker.on_candle(BTC, candle(n)), "the market order fills on the next candle"
        assert broker.get_order(placed.client_order_id, BTC) is not None
    return (time.perf_counter() - started) / count


def one_size(past: int, folder: Path) -> tuple[float, float, float, float, float]:
    """(old, new, memory) seconds per cycle, the seconds to open the JSON book as the new one
    (migrated, then loaded), and the rows the new book wrote per cycle."""
    memory = SimulatedBroker(CONFIG)
    for n in range(past):
        memory.place(market(n))
        memory.on_candle(BTC, candle(n))
    old_path, new_path = folder / f"old-{past}.json", folder / f"new-{past}.json"
    save_json(memory._book, old_path)
    shutil.copyfile(old_path, new_path)
    started = time.perf_counter()
    new = SimulatedBroker(CONFIG, new_path)
    open_s = time.perf_counter() - started
    old = JsonRewriteBook(CONFIG, old_path)
    old_s = cycles(old, past, max(3, 2_000 // past))  # O(book) a call: a few cycles say enough
    assert new._disk is not None
    written = new._disk.rows_written
    new_s = cycles(new, past, CYCLES)  # enough to include SQLite's periodic WAL checkpoints
    rows = (new._disk.rows_written - written) / CYCLES
    memory_s = cycles(memory, past, CYCLES)
    return old_s, new_s, memory_s, open_s, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000])
    args = parser.parse_args()
    print("paper exchange book: one place + on_candle + get_order cycle (per cycle)")
    print(
        f"{'past orders':>11}  {'old JSON':>10}  {'new SQLite':>10}  {'old/new':>8}"
        f"  {'memory':>9}  {'rows/cycle':>10}  {'open+migrate':>12}"
    )
    with tempfile.TemporaryDirectory(prefix="tradeflow-paper-book-") as tmp:
        for past in args.sizes:
            old_s, new_s, memory_s, open_s, rows = one_size(past, Path(tmp))
            print(
                f"{past:>11,}  {old_s * 1e3:>7.2f} ms  {new_s * 1e3:>7.3f} ms"
                f"  {old_s / new_s:>7.1f}x  {memory_s * 1e6:>6.1f} us  {rows:>10.1f}"
                f"  {open_s * 1e3:>9.1f} ms"
            )


if __name__ == "__main__":
    main()
