"""Alert debounce state, one row per key, shared by every process and kept over restarts.

`occur` decides and records one occurrence in a transaction (core.alerts decides): the first
occurrence's row is inserted with ON CONFLICT DO NOTHING, so of two processes raising the same
new alert at once exactly one sends it; a later one locks the row (PostgreSQL FOR UPDATE; SQLite
holds its write lock from the insert on). `flush` claims each due summary with a conditional
UPDATE on the state it read, so two processes flushing at once send each summary once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.alerts import Alert, AlertState, Notice, Severity, debounce, due_summary
from infra.ledger.dialect import insert_for
from infra.ledger.models import AlertStateRow
from infra.ledger.sessions import Sessions


def state_of(row: AlertStateRow) -> AlertState:
    return AlertState(
        key=row.key,
        severity=Severity(row.severity),
        first_at=row.first_at,
        last_seen_at=row.last_seen_at,
        last_sent_at=row.last_sent_at,
        suppressed=row.suppressed,
        last_title=row.last_title,
        last_body=row.last_body,
    )


def _values(state: AlertState) -> dict[str, object]:
    return {
        "key": state.key,
        "severity": state.severity.value,
        "first_at": state.first_at,
        "last_seen_at": state.last_seen_at,
        "last_sent_at": state.last_sent_at,
        "suppressed": state.suppressed,
        "last_title": state.last_title,
        "last_body": state.last_body,
    }


class AlertStates:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def occur(self, alert: Alert, now: datetime, window: timedelta) -> Notice | None:
        """Record one occurrence of `alert`; returns what to send now (None: a repeat inside
        the window, counted for the summary)."""
        fresh, first = debounce(None, alert, now, window)
        with self._sessions.write() as s:
            stmt = insert_for(s)(AlertStateRow).values(**_values(fresh))
            stmt = stmt.on_conflict_do_nothing(index_elements=["key"])
            if s.execute(stmt.returning(AlertStateRow.key)).first() is not None:
                return first
            row = s.get_one(AlertStateRow, alert.key, with_for_update=True, populate_existing=True)
            state, notice = debounce(state_of(row), alert, now, window)
            _save(s, state)
            return notice

    def get(self, key: str) -> AlertState | None:
        with self._sessions.read() as s:
            row = s.get(AlertStateRow, key)
            return None if row is None else state_of(row)

    def flush(self, now: datetime, window: timedelta) -> list[Notice]:
        """The summaries due at `now` (repeats counted in a window that has ended), each
        claimed so that no other process sends it too."""
        with self._sessions.read() as s:
            waiting = [state_of(r) for r in s.scalars(
                select(AlertStateRow).where(AlertStateRow.suppressed > 0)
            )]  # fmt: skip
        notices = []
        for state in waiting:
            due = due_summary(state, now, window)
            if due is not None and self._claim(state, due[0]):
                notices.append(due[1])
        return notices

    def _claim(self, seen: AlertState, after: AlertState) -> bool:
        with self._sessions.write() as s:
            return bool(
                s.execute(
                    update(AlertStateRow)
                    .where(
                        AlertStateRow.key == seen.key,
                        AlertStateRow.suppressed == seen.suppressed,
                        AlertStateRow.last_sent_at == seen.last_sent_at,
                    )
                    .values(suppressed=after.suppressed, last_sent_at=after.last_sent_at)
                ).rowcount
            )


def _save(s: Session, state: AlertState) -> None:
    values = _values(state)
    del values["key"]
    s.execute(update(AlertStateRow).where(AlertStateRow.key == state.key).values(**values))
