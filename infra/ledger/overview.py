"""Read models for the API: the safety status and health, each read in one session with a
handful of indexed queries, so a busy dashboard costs the database little."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from core.records import (
    ControlState,
    HealthOverview,
    KillSwitchState,
    ModelInUse,
    SafetyEvent,
    SafetyOverview,
    SafetyRequest,
)
from core.risk.state import Control
from infra.ledger.models import (
    DecisionRow,
    KillSwitchEventRow,
    RefusalCountRow,
    SafetyEventRow,
    SafetyStateRow,
)
from infra.ledger.requests import bucket_of
from infra.ledger.safety import flags_of
from infra.ledger.sessions import Sessions


class Overview:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def safety(self, now: datetime, steps: int = 10, accepted: int = 10) -> SafetyOverview:
        with self._sessions.read() as s:
            rows = {r.control: r for r in s.scalars(select(SafetyStateRow))}
            minute, hour, day = self._refusals(s, now)
            return SafetyOverview(
                flags=flags_of(rows, now),
                kill_switch=_kill_switch(rows.get(Control.KILL_SWITCH.value)),
                breaker=_control(rows.get(Control.CIRCUIT_BREAKER.value)),
                kill_switch_steps=self._steps(s, steps),
                accepted=self._accepted(s, accepted),
                refusals_last_minute=minute,
                refusals_last_hour=hour,
                refusals_last_day=day,
            )

    def health(self, now: datetime, account: str) -> HealthOverview:
        with self._sessions.read() as s:
            rows = {r.control: r for r in s.scalars(select(SafetyStateRow))}
            newest = s.execute(
                select(
                    DecisionRow.model_name,
                    DecisionRow.model_version,
                    DecisionRow.feature_set_version,
                    DecisionRow.decided_at,
                )
                .where(DecisionRow.account == account)
                .order_by(DecisionRow.candle_time.desc())
                .limit(1)
            ).first()
        model = None if newest is None else ModelInUse(*newest)
        return HealthOverview(flags_of(rows, now), _kill_switch(rows.get("kill_switch")), model)

    @staticmethod
    def _refusals(s: Session, now: datetime) -> tuple[int, int, int]:
        minute, hour = bucket_of(now - timedelta(minutes=1)), bucket_of(now - timedelta(hours=1))
        n = RefusalCountRow.refusals
        row = s.execute(
            select(
                func.sum(case((RefusalCountRow.window_start >= minute, n), else_=0)),
                func.sum(case((RefusalCountRow.window_start >= hour, n), else_=0)),
                func.sum(n),
            ).where(RefusalCountRow.window_start >= bucket_of(now - timedelta(days=1)))
        ).one()
        return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)

    @staticmethod
    def _steps(s: Session, limit: int) -> tuple[SafetyEvent, ...]:
        rows = s.execute(
            select(SafetyEventRow.at, SafetyEventRow.control, SafetyEventRow.step,
                   SafetyEventRow.detail)
            .where(SafetyEventRow.control == Control.KILL_SWITCH.value)
            .order_by(SafetyEventRow.id.desc())
            .limit(limit)
        ).all()  # fmt: skip
        return tuple(SafetyEvent(*r) for r in reversed(rows))

    @staticmethod
    def _accepted(s: Session, limit: int) -> tuple[SafetyRequest, ...]:
        e = KillSwitchEventRow
        rows = s.execute(
            select(e.at, e.action, e.accepted, e.reason, e.rejection, e.client)
            .where(e.accepted.is_(True))
            .order_by(e.id.desc())
            .limit(limit)
        ).all()
        return tuple(SafetyRequest(*r) for r in rows)


def _kill_switch(row: SafetyStateRow | None) -> KillSwitchState:
    if row is None:
        return KillSwitchState(False, None, None)
    return KillSwitchState(row.active, row.reason, row.changed_at)


def _control(row: SafetyStateRow | None) -> ControlState | None:
    if row is None:
        return None
    return ControlState(row.control, row.active, row.reason, row.changed_at, row.until)
