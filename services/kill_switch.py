"""The kill switch, complete: halt, cancel every open order, close (or freeze) every position,
record each step, alert. Idempotent: a repeated activation finds nothing left to cancel and the
same closing-order ids it already placed.

Order of steps (each recorded in safety_events with its timing):
1. HALTED is persisted by the signed request itself (the flow refuses new orders from then on);
2. every open order is cancelled: unsent ones in the ledger, sent ones at the broker;
3. every position is closed with a market order (or only frozen, by configuration);
4. an alert goes out; 5. the API reports the state and these steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from core.clock import Clock
from core.errors import ExchangeError
from core.orders import (
    Order,
    OrderEvent,
    OrderOrigin,
    OrderStatus,
    OrderType,
    kill_switch_order_id,
)
from core.ports import Broker, Ledger, Notifier
from core.risk.state import Control
from core.types import Side
from services.execution import follow_broker, submit_order


@dataclass
class KillSwitchReport:
    activated_at: datetime
    cancelled: list[str] = field(default_factory=list)
    cancel_failed: list[str] = field(default_factory=list)
    closing_orders: list[str] = field(default_factory=list)
    close_failed: list[str] = field(default_factory=list)
    seconds_to_cancelled: float = 0.0
    seconds_total: float = 0.0


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
        raise RuntimeError("engage() runs after the kill switch was activated and persisted")
    report = KillSwitchReport(state.changed_at)
    _step(ledger, clock, "halted", {"reason": state.reason})

    for order in ledger.orders.open(account):
        if order.origin is OrderOrigin.KILL_SWITCH:
            continue  # its own closing orders, from an earlier activation: let them fill
        try:
            _cancel(ledger, broker, order, clock)
            report.cancelled.append(order.client_order_id)
        except ExchangeError as exc:
            report.cancel_failed.append(f"{order.client_order_id}: {exc}")
    report.seconds_to_cancelled = time.perf_counter() - started
    _step(
        ledger,
        clock,
        "orders_cancelled",
        {
            "cancelled": len(report.cancelled),
            "failed": report.cancel_failed,
            "seconds": round(report.seconds_to_cancelled, 4),
        },
    )

    if close_positions:
        # Sells still working (one whose cancel failed, or an earlier activation's closing
        # order) already cover part of a position: never sell more than is held.
        working = [o for o in ledger.orders.open(account) if o.side is Side.SELL]
        for symbol, position in sorted(ledger.fills.positions(account).items()):
            coid = kill_switch_order_id(state.changed_at, symbol)
            selling = sum(
                (o.remaining for o in working if o.symbol == symbol and o.client_order_id != coid),
                Decimal(0),
            )
            quantity = position.quantity - selling
            if quantity <= 0:
                continue
            closing = Order(
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
            ledger.orders.insert(closing, account, broker.name)  # False: placed on an earlier try
            try:
                submit_order(ledger, broker, coid, clock)
                report.closing_orders.append(coid)
            except ExchangeError as exc:
                report.close_failed.append(f"{symbol}: {exc}")
        _step(
            ledger,
            clock,
            "positions_closing",
            {"orders": report.closing_orders, "failed": report.close_failed},
        )
    else:
        _step(
            ledger, clock, "positions_frozen", {"positions": len(ledger.fills.positions(account))}
        )

    report.seconds_total = time.perf_counter() - started
    failed = report.cancel_failed + report.close_failed
    alerts.send(
        "tradeflow kill switch ACTIVE",
        f"reason: {state.reason}; cancelled {len(report.cancelled)} orders; "
        f"closing {len(report.closing_orders)} positions"
        + (f"; FAILED: {failed}" if failed else "")
        + f"; took {report.seconds_total:.3f}s",
    )
    _step(ledger, clock, "alerted", {"seconds_total": round(report.seconds_total, 4)})
    return report


def _cancel(ledger: Ledger, broker: Broker, order: Order, clock: Clock) -> None:
    if order.status is OrderStatus.NEW:  # never sent (or its sending is in doubt)
        seen = broker.get_order(order.client_order_id, order.symbol)
        if seen is None:
            ledger.orders.transition(order.client_order_id, OrderEvent.CANCEL, clock.now())
            return
        order = ledger.orders.transition(order.client_order_id, OrderEvent.SUBMIT, clock.now())
        order = follow_broker(ledger, order, seen, clock)
        if order.status.is_terminal:
            return
    if order.status is not OrderStatus.CANCEL_PENDING:
        order = ledger.orders.transition(
            order.client_order_id, OrderEvent.REQUEST_CANCEL, clock.now()
        )
    seen = broker.cancel(order.client_order_id, order.symbol)
    follow_broker(ledger, order, seen, clock)


def _step(ledger: Ledger, clock: Clock, step: str, detail: dict[str, object]) -> None:
    ledger.safety.record_event(Control.KILL_SWITCH, step, detail, clock.now())
