"""The event outbox: `append` inside another store's transaction (the event commits with the
change it reports, or not at all); `Events` reads it in id order for the WebSocket and the
webhook dispatcher, and keeps a named reader's cursor.

On PostgreSQL every append also NOTIFYs channel `tradeflow_events` with the new id; PostgreSQL
delivers it at commit, so a listener (another process) wakes when the event is readable. On
SQLite readers poll `after(cursor)`, an indexed read of the primary key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Insert, String, cast, func, insert, select
from sqlalchemy.orm import Session

from core.events import CHANNEL_OF, Event, EventKind
from infra.ledger.models import EventRow
from infra.ledger.sessions import Sessions

NOTIFY_CHANNEL = "tradeflow_events"


def append(
    session: Session,
    kind: EventKind,
    payload: Mapping[str, Any],
    now: datetime,
    correlation_id: str | None = None,
) -> int:
    """Add one event to `session`'s transaction; returns its id. On PostgreSQL the NOTIFY is
    asked for by the INSERT itself (in its RETURNING): one round trip, not two."""
    values = {
        "channel": CHANNEL_OF[kind].value,
        "kind": kind.value,
        "correlation_id": correlation_id,
        "payload": dict(payload),
        "created_at": now,
    }
    row = session.execute(_insert(session.get_bind().dialect.name), values).first()
    assert row is not None  # an INSERT ... RETURNING of one row
    return int(row[0])


@cache
def _insert(dialect: str) -> Insert:
    """The event's INSERT, built once per dialect (a live decision appends a few): the table's,
    not the entity's, so the session runs it as the plain statement it is."""
    table = EventRow.__table__
    returned: list[Any] = [table.c.id]
    if dialect == "postgresql":
        returned.append(func.pg_notify(NOTIFY_CHANNEL, cast(table.c.id, String)))
    return insert(table).returning(*returned)


def event_of(row: EventRow) -> Event:
    return Event(
        event_id=row.id,
        kind=EventKind(row.kind),
        payload=row.payload,
        created_at=row.created_at,
        correlation_id=row.correlation_id,
    )


class Events:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def publish(
        self,
        kind: EventKind,
        payload: Mapping[str, Any],
        now: datetime,
        correlation_id: str | None = None,
    ) -> int:
        """An event of its own (not tied to another write), in its own transaction."""
        with self._sessions.write() as s:
            return append(s, kind, payload, now, correlation_id)

    def after(
        self, event_id: int, limit: int = 500, kinds: Sequence[EventKind] | None = None
    ) -> list[Event]:
        """Events with an id above `event_id`, oldest first."""
        q = select(EventRow).where(EventRow.id > event_id).order_by(EventRow.id).limit(limit)
        if kinds is not None:
            q = q.where(EventRow.kind.in_([k.value for k in kinds]))
        with self._sessions.read() as s:
            return [event_of(r) for r in s.scalars(q)]

    def last_id(self) -> int:
        """The newest event's id (0 when there is none): where a new reader starts."""
        with self._sessions.read() as s:
            return int(s.scalar(select(func.max(EventRow.id))) or 0)

    def for_correlation(self, correlation_id: str) -> list[Event]:
        q = select(EventRow).where(EventRow.correlation_id == correlation_id).order_by(EventRow.id)
        with self._sessions.read() as s:
            return [event_of(r) for r in s.scalars(q)]
