"""Fault injection over decision -> order -> fill cycles on the simulated exchange.

Faults, drawn from a seeded generator:
- timeout_before: the request times out before the exchange saw it;
- timeout_after: the exchange accepted the order, then the answer was lost;
- rate_limited: HTTP 429;
- db_outage: the ledger is unreachable for a few cycles (every call raises OperationalError);
- duplicate_fill: a fill event is delivered twice;
- kill: a separate process is SIGKILLed right after the exchange accepted its order (before
  the ledger heard of it) or right before it sent it, then "restarted" with reconciliation.
The exchange here does not enforce unique client ids (a second send opens a second order), so
a duplicated order can only be prevented by our own lookup-before-send.

Used by tests/faults (a few hundred cycles) and bench/faults.py (1,000+ and a report).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from core.candles.bar import Bar
from core.clock import FakeClock
from core.errors import LedgerUnavailable, RetryableExchangeError
from core.orders import Fill, Order, OrderStatus
from core.ports import BrokerOrder
from core.types import Side, Symbol, to_decimal
from infra.alerts import Alerts
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from infra.ledger.database import migrate
from infra.ledger.ledger import Ledger, open_ledger
from services.execution import follow_broker, submit_order
from services.reconcile import reconcile
from tests.services.open_book import ACCOUNT, record_order

ROOT = Path(__file__).resolve().parents[2]
D = Decimal


@dataclass(frozen=True)
class FaultPlan:
    seed: int = 7
    timeout_before: float = 0.04
    timeout_after: float = 0.04
    rate_limited: float = 0.04
    duplicate_fill: float = 0.10
    db_outage_every: int = 97  # cycles between outages
    db_outage_cycles: int = 3
    reconcile_every: int = 50
    kills: int = 4


@dataclass
class FaultReport:
    cycles: int = 0
    orders: int = 0
    fills: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    duplicated_orders: int = 0
    lost_fills: int = 0
    position_mismatches: int = 0
    cash_mismatches: int = 0
    placed_while_ledger_down: int = 0
    reconciliations_failed: int = 0
    seconds: float = 0.0


class FlakyLedger:
    """The ledger, unreachable while `down`: every store call raises LedgerUnavailable, as the
    ledger's sessions do when the database does not answer."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self.down = False

    def __getattr__(self, name: str) -> Any:
        return _FlakyStore(self, getattr(self._ledger, name))


class _FlakyStore:
    def __init__(self, owner: FlakyLedger, store: Any) -> None:
        self._owner, self._store = owner, store

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._owner.down:
                raise LedgerUnavailable("ledger database unavailable: unreachable")
            return target(*args, **kwargs)

        return call


class FaultyExchange(SimulatedBroker):
    def __init__(self, config: SimulationConfig, rng: random.Random, plan: FaultPlan) -> None:
        super().__init__(config)
        self.rng, self.plan = rng, plan
        self.faults: Counter[str] = Counter()
        self.ledger: FlakyLedger | None = None
        self.placed_while_down = 0

    def place(self, order: Order) -> BrokerOrder:
        roll = self.rng.random()
        p = self.plan
        if roll < p.timeout_before:
            self.faults["timeout_before"] += 1
            raise RetryableExchangeError("read timeout before the exchange saw the order")
        if roll < p.timeout_before + p.rate_limited:
            self.faults["rate_limited"] += 1
            raise RetryableExchangeError("HTTP 429 Too Many Requests")
        if self.ledger is not None and self.ledger.down:
            self.placed_while_down += 1
        placed = super().place(order)
        if roll < p.timeout_before + p.rate_limited + p.timeout_after:
            self.faults["timeout_after"] += 1
            raise RetryableExchangeError("read timeout after the exchange accepted the order")
        return placed


def real_bars(shared_data: Path, rows: int) -> dict[Symbol, list[Bar]]:
    out = {}
    for pair in ("BTC_USDT", "ETH_USDT"):
        frame = pd.read_feather(
            shared_data / "ohlcv/genetrader-binance-spot-2024" / f"{pair}-1h.feather"
        )
        frame = frame.head(rows)
        columns = ("open", "high", "low", "close", "volume")
        out[Symbol(pair.replace("_", "/"))] = [
            Bar(r.date.to_pydatetime(), *(to_decimal(float(getattr(r, c))) for c in columns))
            for r in frame.itertuples()
        ]
    return out


def run_cycles(
    ledger_url: str, shared_data: Path, cycles: int, plan: FaultPlan, work_dir: Path
) -> FaultReport:
    started = time.perf_counter()
    migrate(ledger_url)
    run = _Cycles(FlakyLedger(open_ledger(ledger_url)), shared_data, cycles, plan)
    for i in range(cycles):
        run.cycle(i)
    run.finish()
    for k in range(plan.kills):
        kill_episode(work_dir / f"kill-{k}", shared_data, run.report, before_send=k % 2 == 1)
    run.report.seconds = time.perf_counter() - started
    return run.report


class _Cycles:
    """Decision -> order -> fill cycles, one symbol a cycle, on a faulty exchange and ledger."""

    def __init__(self, ledger: FlakyLedger, shared_data: Path, cycles: int, plan: FaultPlan):
        self.ledger, self.plan = ledger, plan
        self.rng = random.Random(plan.seed)
        self.config = SimulationConfig(
            starting_cash=D(1_000_000), unique_client_ids=False, fee_rate=D("0.001")
        )
        self.broker = FaultyExchange(self.config, self.rng, plan)
        self.broker.ledger = ledger
        self.bars = real_bars(shared_data, cycles + 2)
        self.symbols = sorted(self.bars)
        self.report = FaultReport()
        self.pending: list[str] = []  # orders decided but not yet acknowledged by the broker
        self.clock = FakeClock(self.bars[self.symbols[0]][0].open_time)
        ledger.accounts.ensure(ACCOUNT, self.config.starting_cash, self.clock.now())

    def cycle(self, i: int) -> None:
        symbol = self.symbols[i % len(self.symbols)]
        bar = self.bars[symbol][i // len(self.symbols) + 1]
        self.clock = FakeClock(bar.open_time)
        every, length = self.plan.db_outage_every, self.plan.db_outage_cycles
        self.ledger.down = every > 0 and i % every < length
        if self.ledger.down and i % every == 0:
            self.report.faults["db_outage"] += 1
        self.report.cycles += 1
        # The exchange trades this candle whatever state our side is in.
        fills = self.broker.on_candle(symbol, bar)
        self.report.fills += len(fills)
        try:
            self._record(symbol, fills)
            self._decide(symbol, bar, i)
            self._send_pending()
        except LedgerUnavailable:
            # The ledger is down: nothing recorded and so nothing sent. Fills the exchange
            # made meanwhile are missing from the ledger until reconciliation adopts them.
            self.report.faults["fills_missed_in_outage"] += len(fills)
            return
        if (i + 1) % self.plan.reconcile_every == 0:
            self._reconcile()

    def _record(self, symbol: Symbol, fills: list[Fill]) -> None:
        """Fill events reach the ledger (some twice); order states follow the exchange."""
        for fill in fills:
            self.ledger.fills.record(ACCOUNT, fill)
            if self.rng.random() < self.plan.duplicate_fill:
                self.report.faults["duplicate_fill"] += 1
                assert self.ledger.fills.record(ACCOUNT, fill) is False
        for order in self.ledger.orders.open(ACCOUNT, symbol):
            seen = self.broker.get_order(order.client_order_id, order.symbol)
            if seen is not None and order.status is not OrderStatus.NEW:
                follow_broker(self.ledger, order, seen, self.clock)  # type: ignore[arg-type]

    def _decide(self, symbol: Symbol, bar: Bar, i: int) -> None:
        """At this candle's close: buy when flat, sell what is held."""
        held = self.ledger.fills.positions(ACCOUNT).get(symbol)
        if self.ledger.orders.open(ACCOUNT, symbol):
            return
        quantity, side = (D(1000) / bar.close).quantize(D("0.00001")), Side.BUY
        if held and held.quantity:
            quantity, side = held.quantity, Side.SELL
        coid = record_order(
            self.ledger,
            symbol,
            i,
            side=side,
            qty=str(quantity),
            at=bar.open_time,  # type: ignore[arg-type]
        )
        self.pending.append(coid)
        self.report.orders += 1

    def _send_pending(self) -> None:
        """Send everything not yet acknowledged, each with a bounded retry loop."""
        for coid in list(self.pending):
            for _attempt in range(8):
                try:
                    submit_order(self.ledger, self.broker, coid, self.clock)  # type: ignore[arg-type]
                    self.pending.remove(coid)
                    break
                except RetryableExchangeError:
                    continue

    def _reconcile(self) -> None:
        outcome = reconcile(self.ledger, self.broker, ACCOUNT, self.symbols, self.clock, Alerts())  # type: ignore[arg-type]
        self.report.reconciliations_failed += not outcome.passed

    def finish(self) -> None:
        self.ledger.down = False
        for coid in self.pending:  # finish what the last cycles left unsent
            submit_order(self.ledger, self.broker, coid, self.clock)  # type: ignore[arg-type]
        self._reconcile()
        self.report.faults.update(self.broker.faults)
        _tally(self.report, self.ledger._ledger, self.broker, self.symbols)
        self.report.placed_while_ledger_down = self.broker.placed_while_down


def _tally(
    report: FaultReport, ledger: Ledger, broker: SimulatedBroker, symbols: list[Symbol]
) -> None:
    report.duplicated_orders += broker.duplicated_orders()
    recorded = {f.fill_id for f in ledger.fills.history(ACCOUNT)}
    for symbol in symbols:
        report.lost_fills += sum(f.fill_id not in recorded for f in broker.fills(symbol))
    ours = {s: p.quantity for s, p in ledger.fills.positions(ACCOUNT).items()}
    theirs = broker.positions(symbols)
    report.position_mismatches += sum(ours.get(s, D(0)) != theirs[s] for s in symbols)
    report.cash_mismatches += ledger.accounts.cash(ACCOUNT) != broker.balances()["USDT"].total


# -- SIGKILL between the exchange and the ledger -------------------------------------------
def kill_episode(folder: Path, shared_data: Path, report: FaultReport, before_send: bool) -> None:
    """A child process submits one order and is SIGKILLed mid-way; the parent restarts from the
    ledger and the exchange's book (both on disk), reconciles, and trades on."""
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'ledger.db'}"
    migrate(url)
    ledger = open_ledger(url)
    config = SimulationConfig(starting_cash=D(1_000_000), unique_client_ids=False)
    book = folder / "exchange.json"
    broker = SimulatedBroker(config, book)
    symbol = Symbol("BTC/USDT")
    bar = real_bars(shared_data, 3)[symbol][1]
    ledger.accounts.ensure(ACCOUNT, config.starting_cash, bar.open_time)
    coid = record_order(ledger, symbol, 1, qty="0.01", at=bar.open_time - timedelta(hours=1))
    marker = folder / "marker"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.faults.harness",
            url,
            str(book),
            coid,
            str(marker),
            "before" if before_send else "after",
        ],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"child exited early ({child.returncode}) or hung")
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    report.faults["kill_before_send" if before_send else "kill_after_accept"] += 1

    # The restart: a new broker client over the same book, reconciliation first.
    broker = SimulatedBroker(config, book)
    clock = FakeClock(bar.open_time)
    outcome = reconcile(ledger, broker, ACCOUNT, [symbol], clock, Alerts())
    report.reconciliations_failed += not outcome.passed
    submit_order(ledger, broker, coid, clock)  # the restarted task runs again: never twice
    for fill in broker.on_candle(symbol, bar):
        ledger.fills.record(ACCOUNT, fill)
    final = reconcile(ledger, broker, ACCOUNT, [symbol], clock, Alerts())
    report.reconciliations_failed += not final.passed
    _tally(report, ledger, broker, [symbol])


class _DieAround(SimulatedBroker):
    """In the child: signal the parent (which then SIGKILLs us) before or after the send."""

    def __init__(self, config: SimulationConfig, book: Path, marker: Path, when: str) -> None:
        super().__init__(config, book)
        self.marker, self.when = marker, when

    def place(self, order: Order) -> BrokerOrder:
        if self.when == "before":
            self._hang()
        placed = super().place(order)
        self._hang()
        return placed

    def _hang(self) -> None:
        self.marker.write_text("now")
        time.sleep(600)


def _child(url: str, book: str, coid: str, marker: str, when: str) -> None:
    ledger = open_ledger(url)
    config = SimulationConfig(starting_cash=D(1_000_000), unique_client_ids=False)
    broker = _DieAround(config, Path(book), Path(marker), when)
    order = ledger.orders.get(coid)  # type: ignore[arg-type]
    assert order is not None
    submit_order(
        ledger, broker, order.client_order_id, FakeClock(order.created_at + timedelta(hours=1))
    )


if __name__ == "__main__":
    _child(*sys.argv[1:6])
