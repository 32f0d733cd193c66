"""Reconciliation: the ledger against the broker. Runs at start-up (trading stays HALTED until
it passes) and on a schedule.

It adopts what it can explain and raises what it cannot:
- an order the broker holds but the ledger still has as NEW (we died after sending it) is
  marked sent and brought to the broker's state;
- an order the ledger thinks is working but the broker no longer knows is marked EXPIRED;
- a fill the broker reports for one of our orders and the ledger lacks is recorded (once: fill
  ids are unique);
- then positions and cash in the quote currency must agree (less what a real account held
  before the first start, and up to dust no order can move); a fill for an order we never
  recorded, or any remaining difference, fails the reconciliation, keeps trading HALTED and
  alerts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from core.alerts import Severity
from core.clock import Clock
from core.errors import FatalError
from core.orders import OrderEvent, OrderStatus
from core.ports import Broker, Ledger, Notifier
from core.risk.state import Control
from core.types import Symbol, base_of
from services.correlation import bound
from services.execution import follow_broker

ZERO = Decimal(0)


class ReconciliationFailed(FatalError):
    """The ledger and the broker disagree in ways reconciliation cannot explain."""


@dataclass
class ReconciliationReport:
    adopted_fills: list[str] = field(default_factory=list)
    orders_found_sent: list[str] = field(default_factory=list)
    orders_updated: list[str] = field(default_factory=list)
    orders_unknown_to_broker: list[str] = field(default_factory=list)
    dust: list[str] = field(default_factory=list)  # differences too small to trade: tolerated
    unexplained: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.unexplained


def mark_pending(ledger: Ledger, clock: Clock, why: str = "process started") -> None:
    """HALTED until the next reconciliation passes."""
    ledger.safety.set_control(Control.RECONCILIATION, True, why, clock.now(), event="pending")


def reconcile(
    ledger: Ledger,
    broker: Broker,
    account: str,
    symbols: Iterable[str],
    clock: Clock,
    alerts: Notifier,
    quote: str = "USDT",
    dust: Mapping[str, Decimal] | None = None,
    since: datetime | None = None,
) -> ReconciliationReport:
    """`dust`: per symbol, the largest difference tolerated between the ledger's position and
    the exchange's (amounts below the exchange's minimum, which no order can move). `since`:
    a real account's trades before the system first started on it are not ours."""
    report = ReconciliationReport()
    # Traded symbols plus any the ledger holds or has orders working in.
    known = {Symbol(s) for s in symbols}
    known |= {o.symbol for o in ledger.orders.open(account)} | set(ledger.fills.positions(account))
    # Orders first (one sent but recorded unsent must take its fills), then the fills, then
    # the broker's final states: a fill is adopted before its order is closed by a cancel.
    _orders(ledger, broker, account, clock, report, terminal=False)
    _adopt_fills(ledger, broker, account, sorted(known), since, report)
    _orders(ledger, broker, account, clock, report, terminal=True)
    _compare_holdings(ledger, broker, account, sorted(known), quote, dust or {}, report)
    _record(ledger, report, clock, alerts)
    return report


def _adopt_fills(
    ledger: Ledger,
    broker: Broker,
    account: str,
    symbols: list[Symbol],
    since: datetime | None,
    report: ReconciliationReport,
) -> None:
    """Fills the broker reports for our orders and the ledger lacks are recorded, once."""
    recorded = {f.fill_id for f in ledger.fills.history(account)}
    for symbol in symbols:
        for fill in broker.fills(symbol, since):
            if fill.fill_id in recorded or (since is not None and fill.filled_at < since):
                continue
            order = ledger.orders.get(fill.client_order_id)
            if order is None:
                report.unexplained.append(
                    f"fill {fill.fill_id} for order {fill.client_order_id} the ledger never "
                    f"recorded ({fill.side} {fill.quantity} {symbol} at {fill.price})"
                )
                continue
            with bound(correlation_id=order.decision_id):  # its log lines name the decision
                if ledger.fills.record(account, fill):
                    report.adopted_fills.append(fill.fill_id)


def _compare_holdings(
    ledger: Ledger,
    broker: Broker,
    account: str,
    symbols: list[Symbol],
    quote: str,
    dust: Mapping[str, Decimal],
    report: ReconciliationReport,
) -> None:
    """The ledger's positions and cash against the exchange's balances, less what the account
    held before the system first started on it (not ours: never traded, never compared)."""
    before = ledger.accounts.holdings(account)
    held = {s: p.quantity for s, p in ledger.fills.positions(account).items() if p.quantity}
    at_broker = {s: q - before.get(base_of(s), ZERO) for s, q in broker.positions(symbols).items()}
    for symbol in sorted(set(held) | {s for s, q in at_broker.items() if q}):
        ours, theirs = held.get(symbol, ZERO), at_broker.get(Symbol(symbol), ZERO)
        line = f"position {symbol}: ledger {_shown(ours)}, broker {_shown(theirs)}"
        if ours == theirs:
            continue
        if abs(ours - theirs) <= dust.get(symbol, ZERO):
            report.dust.append(line)
        else:
            report.unexplained.append(line)
    balances = broker.balances()
    if quote in balances:
        ours, theirs = (
            ledger.accounts.cash(account),
            balances[quote].total - before.get(quote, ZERO),
        )
        if ours != theirs:
            report.unexplained.append(
                f"cash {quote}: ledger {_shown(ours)}, broker {_shown(theirs)}"
            )


def _record(ledger: Ledger, report: ReconciliationReport, clock: Clock, alerts: Notifier) -> None:
    """Passed: trading may go on. Failed: HALTED until a reconciliation passes, and an alert."""
    detail: dict[str, object] = {
        "adopted_fills": report.adopted_fills,
        "orders_found_sent": report.orders_found_sent,
        "orders_updated": report.orders_updated,
        "orders_unknown_to_broker": report.orders_unknown_to_broker,
        "dust": report.dust,
        "unexplained": report.unexplained,
    }
    now = clock.now()
    if report.passed:
        ledger.safety.set_control(
            Control.RECONCILIATION, False, "passed", now, event="passed", detail=detail
        )
        return
    why = ("failed: " + "; ".join(report.unexplained))[:2000]
    ledger.safety.set_control(Control.RECONCILIATION, True, why, now, event="failed", detail=detail)
    alerts.send(
        "tradeflow reconciliation FAILED: trading halted",
        "; ".join(report.unexplained),
        severity=Severity.CRITICAL,
    )


def _orders(
    ledger: Ledger,
    broker: Broker,
    account: str,
    clock: Clock,
    report: ReconciliationReport,
    terminal: bool,
) -> None:
    for order in ledger.orders.open(account):
        seen = broker.get_order(order.client_order_id, order.symbol)
        if seen is None:
            if order.status is not OrderStatus.NEW:
                ledger.orders.transition(
                    order.client_order_id,
                    OrderEvent.EXPIRE,
                    clock.now(),
                    error="unknown to the broker at reconciliation",
                )
                report.orders_unknown_to_broker.append(order.client_order_id)
            continue  # NEW and unknown: never sent; the next decide run sends or cancels it
        if order.status is OrderStatus.NEW:
            order = ledger.orders.transition(order.client_order_id, OrderEvent.SUBMIT, clock.now())
            report.orders_found_sent.append(order.client_order_id)
        if order.status is OrderStatus.SUBMITTED or (terminal and seen.status.is_terminal):
            updated = follow_broker(ledger, order, seen, clock)
            if updated.status is not order.status:
                report.orders_updated.append(order.client_order_id)


def _shown(amount: Decimal) -> str:
    """An amount as people write it: no exponent, no trailing zeros (NUMERIC keeps 18)."""
    return format(amount.normalize(), "f")
