"""What the stores tell the outbox (infra.ledger.events) about their changes: one payload per
event kind, built from the rows just written, JSON-safe (money and quantities as decimal strings,
so no reader gets a float's rounding; times as ISO 8601).

Each `*_in` function appends inside the caller's transaction: the event commits with the change
or not at all. The backtest's bulk writes (infra.ledger.backtests) never call them: a backtest
is not live news.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from core.decision import Decision
from core.events import EventKind
from core.orders import Fill, Order
from core.risk.state import Control, SafetyFlags, effective_state
from infra.ledger.events import append
from infra.ledger.models import OrderRow, PositionRow, SafetyStateRow

# The controls with an event kind of their own. Reconciliation and the operator's state have
# none in core.events yet, so their changes are not announced (their trading state is, in the
# next kill-switch or breaker event).
CONTROL_KINDS = {
    Control.KILL_SWITCH.value: EventKind.KILL_SWITCH,
    Control.CIRCUIT_BREAKER.value: EventKind.CIRCUIT_BREAKER,
}


def _text(value: Decimal | None) -> str | None:
    """A decimal as plain digits without trailing zeros: the same text from SQLite and from
    PostgreSQL (whose NUMERIC keeps its column's scale), never an exponent."""
    return None if value is None else format(value.normalize(), "f")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def decision_made_in(s: Session, decision: Decision) -> None:
    """decision.made, correlated by the decision's own id."""
    inp, verdict = decision.input, decision.verdict
    payload = {
        "decision_id": decision.decision_id,
        "account": inp.account,
        "symbol": inp.symbol,
        "timeframe": inp.timeframe,
        "candle_time": _iso(inp.candle_time),
        "price": _text(inp.price),
        "action": decision.consensus.action.value,
        "score": decision.consensus.score,
        "risk_approved": None if verdict is None else verdict.approved,
        "risk_reasons": [] if verdict is None else [str(d) for d in verdict.denials],
        "client_order_id": None if decision.order is None else decision.order.client_order_id,
        "decided_at": _iso(decision.decided_at),
    }
    append(s, EventKind.DECISION_MADE, payload, decision.decided_at, decision.decision_id)


def order_created_in(s: Session, order: Order, account: str, broker: str, now: datetime) -> None:
    payload = {
        "client_order_id": order.client_order_id,
        "decision_id": order.decision_id,
        "account": account,
        "broker": broker,
        "symbol": order.symbol,
        "side": order.side.value,
        "order_type": order.order_type.value,
        "quantity": _text(order.quantity),
        "limit_price": _text(order.limit_price),
        "status": order.status.value,
        "origin": order.origin.value,
        "created_at": _iso(order.created_at),
        "market_time": _iso(order.market_time),
    }
    append(s, EventKind.ORDER_CREATED, payload, now, order.decision_id)


def order_updated_in(s: Session, row: OrderRow, previous: str, now: datetime) -> None:
    """order.updated from the order's row as it now is (`previous`: its status before)."""
    filled = row.filled_quantity
    payload = {
        "client_order_id": row.client_order_id,
        "decision_id": row.decision_id,
        "account": row.account,
        "symbol": row.symbol,
        "side": row.side,
        "status": row.status,
        "previous_status": previous,
        "quantity": _text(row.quantity),
        "filled_quantity": _text(filled),
        "average_price": _text(row.filled_cost / filled) if filled else None,
        "error": row.error,
        "updated_at": _iso(now),
    }
    append(s, EventKind.ORDER_UPDATED, payload, now, row.decision_id)


def fill_recorded_in(
    s: Session, account: str, fill: Fill, realised: Decimal, decision_id: str | None
) -> None:
    payload = {
        "fill_id": fill.fill_id,
        "client_order_id": fill.client_order_id,
        "account": account,
        "symbol": fill.symbol,
        "side": fill.side.value,
        "quantity": _text(fill.quantity),
        "price": _text(fill.price),
        "fee": _text(fill.fee),
        "fee_in_base": fill.fee_in_base,
        "realised_pnl": _text(realised),
        "filled_at": _iso(fill.filled_at),
    }
    append(s, EventKind.FILL_RECORDED, payload, fill.filled_at, decision_id)


def position_changed_in(
    s: Session, row: PositionRow, now: datetime, decision_id: str | None
) -> None:
    payload = {
        "account": row.account,
        "symbol": row.symbol,
        "quantity": _text(row.quantity),
        "avg_price": _text(row.avg_price),
        "realised_pnl": _text(row.realised_pnl),
        "updated_at": _iso(now),
    }
    append(s, EventKind.POSITION_CHANGED, payload, now, decision_id)


def control_changed_in(
    s: Session, row: SafetyStateRow, step: str, flags: SafetyFlags, now: datetime
) -> None:
    """safety.kill_switch / safety.circuit_breaker for a control just set (nothing for the
    others), with the effective trading state the controls (`flags`, read after the change)
    lead to."""
    kind = CONTROL_KINDS.get(row.control)
    if kind is None:
        return
    state, cause, _ = effective_state(flags)
    payload: dict[str, Any] = {
        "control": row.control,
        "active": bool(row.active),
        "step": step,
        "reason": row.reason,
        "until": _iso(row.until),
        "changed_at": _iso(row.changed_at),
        "trading_state": state.value,
        "halt_cause": None if cause is None else cause.value,
    }
    append(s, kind, payload, now)
