"""Kill-switch latency: from the signed activation request to every order cancelled and every
position closing, with 50 open orders and 20 positions on the paper exchange.

Run: .venv/bin/python -m bench.kill_switch [--repeats N] [--database-url URL]  (from the repo root)

Each repeat builds a fresh ledger (SQLite under a temp dir unless --database-url) and a fresh
paper exchange with its book on disk (as `make run` uses it), then POSTs one signed activation
to the real FastAPI app. Reported, median over the repeats:
- request: the POST from sending to its answer (the answer comes after the work is done);
- cancelled: activation persisted -> the 50th cancel confirmed and recorded;
- total: activation persisted -> 20 closing orders accepted and the alert sent.
Reference, measured in the same run: the paper exchange alone doing the same 50 cancels and 20
market sells on a copy of the same book, with no ledger and no API: the floor any kill switch
here pays. Budget: 1 s for the whole sequence, and within 2x of the reference.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from contextlib import closing
from decimal import Decimal
from pathlib import Path

from fastapi.testclient import TestClient

from bench.schemas import drop_schemas, fresh_schema
from core.clock import SystemClock
from core.orders import Order, OrderOrigin
from core.safety.signing import sign
from core.types import ClientOrderId, Side, Symbol
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from infra.ledger.database import migrate
from infra.ledger.ledger import open_ledger
from infra.settings import Settings
from services import bootstrap
from serving.app import create_app
from tests.services.open_book import open_book

OPEN_ORDERS, POSITIONS = 50, 20
SECRET = "bench-secret-0123456789abcdef0123456789"


def one_run(database_url: str | None) -> tuple[float, float, float, float]:
    with tempfile.TemporaryDirectory(prefix="tradeflow-bench-") as tmp:
        var = Path(tmp)
        url = fresh_schema(database_url)[1] if database_url else f"sqlite:///{var / 'ledger.db'}"
        migrate(url)
        ledger = open_ledger(url)
        settings = Settings(
            database_url=url,
            kill_switch_secret=SECRET,
            var_dir=var,
            starting_cash=Decimal(1_000_000),
        )
        config = SimulationConfig(starting_cash=Decimal(1_000_000))
        book = SimulatedBroker(config, bootstrap.paper_book_path(settings))
        open_book(ledger, book, OPEN_ORDERS, POSITIONS)
        # The reference works on a copy of this very book: the same orders and positions.
        # The book is SQLite in WAL mode: a file copy would miss what is still in the WAL.
        with (
            closing(sqlite3.connect(bootstrap.paper_book_path(settings))) as src,
            closing(sqlite3.connect(var / "reference.json")) as dst,
        ):
            src.backup(dst)
        held = {s: p.quantity for s, p in ledger.fills.positions("paper").items()}
        with TestClient(create_app(settings)) as api:
            ts = int(time.time())
            headers = {
                "X-Kill-Switch-Timestamp": str(ts),
                "X-Kill-Switch-Signature": sign(SECRET, "activate", ts),
            }
            started = time.perf_counter()
            r = api.post(
                "/api/v1/safety/kill-switch",
                json={"action": "activate", "reason": "bench"},
                headers=headers,
            )
            request_s = time.perf_counter() - started
        out = r.json()
        assert r.status_code == 200, out
        assert (out["cancelled_orders"], out["closing_orders"]) == (OPEN_ORDERS, POSITIONS), out
        steps = {e.step: e.detail for e in ledger.safety.events("kill_switch")}
        cancelled_s = float(steps["orders_cancelled"]["seconds"])  # type: ignore[arg-type]
        total_s = float(out["seconds"])
        reference_s = broker_only(var / "reference.json", held)
        return request_s, cancelled_s, total_s, reference_s


def broker_only(path: Path, held: dict[Symbol, Decimal]) -> float:
    """The same work straight on the paper exchange, over a copy of the same book: cancel every
    resting order and sell every position at market. No ledger, no API."""
    broker = SimulatedBroker(SimulationConfig(starting_cash=Decimal(1_000_000)), path)
    resting = broker.open_orders()
    now = SystemClock().now()
    started = time.perf_counter()
    for o in resting:
        broker.cancel(o.client_order_id, o.symbol)
    for i, (symbol, quantity) in enumerate(sorted(held.items())):
        broker.place(
            Order(ClientOrderId(f"k{i}"), None, symbol, Side.SELL, quantity, now, now,
                  origin=OrderOrigin.KILL_SWITCH)
        )  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    try:
        runs = [one_run(args.database_url) for _ in range(args.repeats)]
    finally:
        if args.database_url:
            drop_schemas(args.database_url)
    request, cancelled, total, reference = (statistics.median(c) for c in zip(*runs, strict=True))
    where = "PostgreSQL" if args.database_url else "SQLite"
    print(f"kill switch, {OPEN_ORDERS} open orders + {POSITIONS} positions, {where} ledger, "
          f"paper exchange on disk, median of {args.repeats}")  # fmt: skip
    print(f"request -> answer:        {request * 1000:8.1f} ms")
    print(f"activation -> cancelled:  {cancelled * 1000:8.1f} ms")
    print(f"activation -> all done:   {total * 1000:8.1f} ms   budget 1000 ms "
          f"({total:.2f}x of budget)")  # fmt: skip
    print(f"reference (exchange only): {reference * 1000:7.1f} ms   "
          f"ratio ours / reference: {total / reference:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
