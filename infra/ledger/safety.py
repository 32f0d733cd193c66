"""Safety controls (kill switch, breaker, reconciliation, operator), their events and the
effective trading state. A control's change and the trading-state change it causes are one
transaction: nothing can see the control moved and the state not."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from core.records import ControlState, KillSwitchState, SafetyEvent
from core.risk.state import (
    Control,
    HaltCause,
    SafetyFlags,
    StateChange,
    TradingState,
    effective_state,
)
from infra.ledger.dialect import insert_for
from infra.ledger.mappers import control_of, kill_switch_of
from infra.ledger.models import SafetyEventRow, SafetyStateRow
from infra.ledger.news import CONTROL_KINDS, control_changed_in
from infra.ledger.sessions import Sessions

# session.info key: the controls as read in this session's transaction, kept until one is set
# (set_control_in), so a write that announces a control and then notes the trading state reads
# them once (each read is a round trip inside the kill switch's durable write).
_CONTROLS_READ = "tradeflow.safety_controls"


def flags_in(s: Session, now: datetime | None) -> SafetyFlags:
    rows = s.info.get(_CONTROLS_READ)
    if rows is None:
        rows = s.info[_CONTROLS_READ] = {r.control: r for r in s.scalars(select(SafetyStateRow))}
    return flags_of(rows, now)


def flags_of(rows: Mapping[str, Any], now: datetime | None) -> SafetyFlags:
    """The controls as the gate sees them at `now` (rows of safety_state, as ORM objects or
    plain rows): a breaker whose cooldown has ended no longer halts (the breaker service
    records its clearing)."""
    kill = rows.get(Control.KILL_SWITCH)
    breaker = rows.get(Control.CIRCUIT_BREAKER)
    pending = rows.get(Control.RECONCILIATION)
    operator = rows.get(Control.OPERATOR)
    breaker_on = (
        breaker is not None
        and breaker.active
        and (now is None or breaker.until is None or now < breaker.until)
    )
    return SafetyFlags(
        kill_switch_reason=(kill.reason or "no reason given") if kill and kill.active else None,
        breaker_reason=(breaker.reason or "tripped") if breaker_on and breaker else None,
        reconciled=not (pending and pending.active),
        reconciliation_reason=pending.reason if pending and pending.active else None,
        operator_state=TradingState(operator.reason)
        if operator and operator.active and operator.reason
        else TradingState.ACTIVE,
    )


def note_trading_state_in(s: Session, now: datetime) -> StateChange | None:
    """Record a change of the effective trading state with its cause, when the controls just
    moved it; None when it did not change."""
    last = s.scalar(
        select(SafetyEventRow)
        .where(SafetyEventRow.control == Control.TRADING_STATE.value)
        .order_by(SafetyEventRow.id.desc())
        .limit(1)
    )
    previous = TradingState(last.step) if last is not None else TradingState.ACTIVE
    change = state_change(flags_in(s, now), previous, now)
    if change is not None:
        step, detail = state_change_event(change)
        s.add(SafetyEventRow(at=now, control=Control.TRADING_STATE.value, step=step, detail=detail))
    return change


def state_change(flags: SafetyFlags, previous: TradingState, now: datetime) -> StateChange | None:
    """The change of the effective trading state the controls lead to from `previous`."""
    current, cause, detail = effective_state(flags)
    if previous is current:
        return None
    return StateChange(previous, current, cause or HaltCause.CLEARED, detail, now)


def state_change_event(change: StateChange) -> tuple[str, dict[str, object]]:
    """(step, detail) of the trading_state event that records a change."""
    detail = {"previous": change.previous.value, "cause": change.cause.value}
    return change.current.value, detail | {"detail": change.detail}


def control_event(
    active: bool,
    reason: str | None,
    event: str | None,
    detail: Mapping[str, object] | None,
    until: datetime | None,
) -> tuple[str, dict[str, object]]:
    """(step, detail) of the event that records a control being set."""
    extra = {"until": until.isoformat()} if until else {}
    return event or ("activated" if active else "cleared"), {
        "reason": reason,
        **(detail or {}),
    } | extra


def set_control_in(
    s: Session,
    name: str,
    active: bool,
    reason: str | None,
    now: datetime,
    until: datetime | None = None,
) -> SafetyStateRow:
    """Set a control inside the caller's transaction, with one upsert (two processes setting
    the same control for the first time at once both succeed; the row stays locked until the
    transaction ends). The session's copy of the row, if it has one, is refreshed."""
    values = {"active": active, "reason": reason, "changed_at": now, "until": until}
    s.info.pop(_CONTROLS_READ, None)
    row = s.scalars(
        insert_for(s)(SafetyStateRow)
        .values(control=name, **values)
        .on_conflict_do_update(index_elements=["control"], set_=values)
        .returning(SafetyStateRow),
        execution_options={"populate_existing": True},
    ).one()
    return row


def announce_control_in(s: Session, row: SafetyStateRow, step: str, now: datetime) -> None:
    """Write the event of a control just set, in the caller's transaction (kill switch and
    breaker only: the kinds core.events has)."""
    if row.control in CONTROL_KINDS:
        s.flush()  # the trading state the event carries is read back from the controls
        control_changed_in(s, row, step, flags_in(s, now), now)


# Read at every live decision: built once (infra.ledger.orders says why).
_CONTROLS = select(SafetyStateRow)
_CONTROL = _CONTROLS.where(SafetyStateRow.control == bindparam("control"))


class Safety:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def control(self, name: str) -> ControlState | None:
        rows = self._sessions.rows(_CONTROL, {"control": name})
        return control_of(rows[0] if rows else None)

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
        """Set a control, record why, and note the trading state it leads to: one transaction."""
        with self._sessions.write() as s:
            row = set_control_in(s, name, active, reason, now, until)
            step, what = control_event(active, reason, event, detail, until)
            s.add(SafetyEventRow(at=now, control=name, step=step, detail=what))
            announce_control_in(s, row, step, now)
            s.flush()
            return note_trading_state_in(s, now)

    def record_event(
        self, control: str, step: str, detail: Mapping[str, object], now: datetime
    ) -> None:
        with self._sessions.write() as s:
            s.add(SafetyEventRow(at=now, control=control, step=step, detail=dict(detail)))

    def events(self, control: str | None = None, limit: int = 100) -> list[SafetyEvent]:
        q = select(SafetyEventRow)
        if control is not None:
            q = q.where(SafetyEventRow.control == control)
        with self._sessions.read() as s:
            rows = list(s.scalars(q.order_by(SafetyEventRow.id.desc()).limit(limit)))
            return [SafetyEvent(r.at, r.control, r.step, r.detail) for r in reversed(rows)]

    def flags(self, now: datetime | None = None) -> SafetyFlags:
        rows = self._sessions.rows(_CONTROLS)
        return flags_of({r.control: r for r in rows}, now)

    def kill_switch(self) -> KillSwitchState:
        with self._sessions.read() as s:
            return kill_switch_of(s.get(SafetyStateRow, Control.KILL_SWITCH.value))
