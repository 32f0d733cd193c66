"""The kill switch, complete: halt, cancel every open order, close (or freeze) every position,
record each step, alert. Idempotent: a repeated activation finds nothing left to cancel and the
same closing-order ids it already placed.

Order of steps (each recorded in safety_events with its timing):
1. HALTED is persisted by the signed request itself (the flow refuses new orders from then on);
2. every open order is cancelled: unsent ones in the ledger, sent ones at the broker;
3. every position is closed with a market order (or only frozen, by configuration);
4. an alert goes out; 5. the API reports the state and these steps.

The broker's calls are one by one (that is what an exchange offers); the ledger's writes for
each step are one transaction, so the kill switch costs little more than the exchange's time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum

from core.alerts import Severity
from core.clock import Clock
from core.errors import ExchangeError, FatalError
from core.orders import (
    Order,
    OrderChange,
    OrderEvent,
    OrderOrigin,
    OrderStatus,
    OrderType,
    kill_switch_order_id,
)
from core.ports import Broker, BrokerOrder, Ledger, Notifier
from core.risk.state import Control
from core.types import Side
from services.execution import event_to_follow, follow_broker, submit_order

ZERO = Decimal(0)
FILLED = OrderStatus.FILLED  # a cancel the exchange answers with a fill cancelled nothing


class KillSwitchNotActive(FatalError):
    pass


@dataclass
class KillSwitchReport:
    activated_at: datetime
    cancelled: list[str] = field(default_factory=list)
    cancel_failed: list[str] = field(default_factory=list)
    closing_orders: list[str] = field(default_factory=list)
    close_failed: list[str] = field(default_factory=list)
    # Claimed by a sender but not at the exchange yet: the sender cancels it on arrival.
    in_flight: list[str] = field(default_factory=list)
    seconds_to_cancelled: float = 0.0
    seconds_total: float = 0.0

    @property
    def failures(self) -> list[str]:
        return self.cancel_failed + self.close_failed


def engage(
    ledger: Ledger,
    broker: Broker,
    account: str,
    clock: Clock,
    alerts: Notifier,
    close_positions: bool = True,
) -> KillSwitchReport:
    started = time.perf_counter()
    state = ledger.safety.kill_switch()
    if not state.active or state.changed_at is None:
        raise KillSwitchNotActive("engage() runs after the kill switch was activated and persisted")
    report = KillSwitchReport(state.changed_at)
    _step(ledger, clock, "halted", {"reason": state.reason})
    cancel_open_orders(ledger, broker, account, clock, report)
    report.seconds_to_cancelled = time.perf_counter() - started
    _step(ledger, clock, "orders_cancelled", {
        "cancelled": len(report.cancelled),
        "in_flight": report.in_flight,
        "failed": report.cancel_failed,
        "seconds": round(report.seconds_to_cancelled, 4),
    })  # fmt: skip
    if close_positions:
        close_all_positions(ledger, broker, account, clock, report)
        closing = {"orders": report.closing_orders, "failed": report.close_failed}
        _step(ledger, clock, "positions_closing", closing)
    else:
        held = len(ledger.fills.positions(account))
        _step(ledger, clock, "positions_frozen", {"positions": held})
    report.seconds_total = time.perf_counter() - started
    alerts.send(
        "tradeflow kill switch ACTIVE",
        f"reason: {state.reason}; cancelled {len(report.cancelled)} orders; "
        f"closing {len(report.closing_orders)} positions"
        + (f"; FAILED: {report.failures}" if report.failures else "")
        + f"; took {report.seconds_total:.3f}s",
        severity=Severity.CRITICAL,
    )
    _step(ledger, clock, "alerted", {"seconds_total": round(report.seconds_total, 4)})
    return report


def cancel_open_orders(
    ledger: Ledger, broker: Broker, account: str, clock: Clock, report: KillSwitchReport
) -> None:
    """Every open order but the kill switch's own closing orders (let those fill)."""
    orders = [o for o in ledger.orders.open(account) if o.origin is not OrderOrigin.KILL_SWITCH]
    working: list[Order] = []
    for order in orders:
        if order.status is not OrderStatus.NEW:
            working.append(order)
            continue
        try:  # never sent, or its sending is in doubt
            settled = _settle_unsent(ledger, broker, order, clock)
        except ExchangeError as exc:
            report.cancel_failed.append(f"{order.client_order_id}: {exc}")
            continue
        if settled is _Unsent.CANCELLED:
            report.cancelled.append(order.client_order_id)
        elif settled is _Unsent.IN_FLIGHT:
            report.in_flight.append(order.client_order_id)
        elif isinstance(settled, Order):  # working at the exchange: cancel it there
            working.append(settled)
    _cancel_working(ledger, broker, working, clock, report)


class _Unsent(Enum):
    CANCELLED = "cancelled"  # no sender had claimed it: cancelled in the ledger
    IN_FLIGHT = "in_flight"  # claimed, not at the exchange yet: its sender cancels it there
    DONE = "done"  # at the exchange and done there already (filled, say): nothing to cancel


def _settle_unsent(ledger: Ledger, broker: Broker, order: Order, clock: Clock) -> Order | _Unsent:
    """An order no sender has claimed is cancelled in the ledger. One a sender claimed is
    looked up: if the broker holds it, it is recorded as sent (unless its sender just did)
    and, while it works there, returned to be cancelled there; if not, it is in flight or its
    sender died, and the sender (or the next run, which sees the halt before sending) cancels
    it."""
    coid = order.client_order_id
    if ledger.orders.cancel_unsent(coid, clock.now(), "cancelled by the kill switch, unsent"):
        return _Unsent.CANCELLED
    seen = broker.get_order(coid, order.symbol)
    if seen is None:
        return _Unsent.IN_FLIGHT
    sent = ledger.orders.mark_submitted(coid, clock.now()) or ledger.orders.get(coid) or order
    followed = follow_broker(ledger, sent, seen, clock)
    return followed if seen.status.is_open else _Unsent.DONE


def _cancel_working(
    ledger: Ledger, broker: Broker, orders: list[Order], clock: Clock, report: KillSwitchReport
) -> None:
    asking = [o for o in orders if o.status is not OrderStatus.CANCEL_PENDING]
    pending = ledger.orders.apply(
        [OrderChange(o.client_order_id, (OrderEvent.REQUEST_CANCEL,)) for o in asking],
        clock.now(),
    )
    pending += [o for o in orders if o.status is OrderStatus.CANCEL_PENDING]
    answers: list[tuple[Order, BrokerOrder]] = []
    for order in pending:
        try:
            answers.append((order, broker.cancel(order.client_order_id, order.symbol)))
        except ExchangeError as exc:
            report.cancel_failed.append(f"{order.client_order_id}: {exc}")
    changes = [
        OrderChange(order.client_order_id, (event,))
        for order, seen in answers
        if (event := event_to_follow(order.status, seen)) is not None
    ]
    ledger.orders.apply(changes, clock.now())
    report.cancelled += [o.client_order_id for o, seen in answers if seen.status is not FILLED]


def close_all_positions(
    ledger: Ledger, broker: Broker, account: str, clock: Clock, report: KillSwitchReport
) -> None:
    """A market sell of every position, less what sells still working (one whose cancel
    failed, an earlier activation's closing order) already offer: never more than is held."""
    orders = _closing_orders(ledger, account, clock, report.activated_at)
    fresh = ledger.orders.insert_many(orders, account, broker.name)
    changes: list[OrderChange] = []
    for order in orders:
        try:
            if order.client_order_id in fresh:  # recorded just now: it was never sent
                seen = broker.place(order)
                follow = event_to_follow(OrderStatus.SUBMITTED, seen)
                events = (OrderEvent.SUBMIT,) + ((follow,) if follow else ())
                changes.append(OrderChange(order.client_order_id, events, sent=True))
            else:  # an earlier try recorded it: look it up before sending anything
                submit_order(ledger, broker, order.client_order_id, clock)
            report.closing_orders.append(order.client_order_id)
        except ExchangeError as exc:
            report.close_failed.append(f"{order.symbol}: {exc}")
    ledger.orders.apply(changes, clock.now())


def _closing_orders(
    ledger: Ledger, account: str, clock: Clock, activated_at: datetime
) -> list[Order]:
    working = [o for o in ledger.orders.open(account) if o.side is Side.SELL]
    out = []
    for symbol, position in sorted(ledger.fills.positions(account).items()):
        coid = kill_switch_order_id(activated_at, symbol)
        offered = (o.remaining for o in working if o.symbol == symbol and o.client_order_id != coid)
        quantity = position.quantity - sum(offered, ZERO)
        if quantity <= 0:
            continue
        out.append(
            Order(
                client_order_id=coid,
                decision_id=None,
                symbol=symbol,
                side=Side.SELL,
                quantity=quantity,
                created_at=clock.now(),
                market_time=clock.now(),
                order_type=OrderType.MARKET,
                origin=OrderOrigin.KILL_SWITCH,
            )
        )
    return out


def _step(ledger: Ledger, clock: Clock, step: str, detail: dict[str, object]) -> None:
    ledger.safety.record_event(Control.KILL_SWITCH, step, detail, clock.now())
