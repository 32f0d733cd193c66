"""Webhook subscriptions and their deliveries, the dead-letter queue included.

Fan-out turns outbox events into one pending delivery per matching subscription; the unique
(subscription, event) makes it idempotent, so two API workers fanning out the same events
create each delivery once, and the "webhooks" cursor only moves forward.

A dispatcher claims due deliveries before sending them, so two dispatchers never send the same
one at once: a claim counts the attempt and pushes `next_attempt_at` by a lease (a dispatcher
that dies mid-send leaves the delivery to be claimed again once the lease ends). The claim is one
statement, UPDATE … WHERE id IN (the due ones) RETURNING: on PostgreSQL the due ones are chosen
FOR UPDATE SKIP LOCKED (a second dispatcher skips the rows the first holds, and never waits on
them); SQLite runs a writing statement whole under its database write lock, so a second
dispatcher's claim sees the first one's pushed `next_attempt_at` (not due: not claimed). An
attempt's result is recorded only while the delivery still carries that attempt's count, so a
dispatcher whose lease ran out cannot overwrite a newer attempt's result.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.orm import Session

from core.events import Event
from core.webhooks import Delivery, DeliveryStatus, Outcome, Outgoing, Subscription
from infra.ledger.dialect import insert_for
from infra.ledger.events import event_of
from infra.ledger.models import CursorRow, EventRow, WebhookDeliveryRow, WebhookSubscriptionRow
from infra.ledger.sessions import Sessions

CURSOR = "webhooks"
PENDING = DeliveryStatus.PENDING.value


def subscription_of(row: WebhookSubscriptionRow) -> Subscription:
    return Subscription(
        subscription_id=row.id,
        url=row.url,
        events=tuple(row.events),
        secret=row.secret,
        description=row.description,
        active=row.active,
        created_at=row.created_at,
    )


def delivery_of(row: WebhookDeliveryRow) -> Delivery:
    return Delivery(
        delivery_id=row.id,
        subscription_id=row.subscription_id,
        event_id=row.event_id,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        last_status_code=row.last_status_code,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )


def _move_cursor(s: Session, position: int, now: datetime) -> None:
    """Forward only, in the caller's transaction; safe when two writers create it at once."""
    stmt = insert_for(s)(CursorRow).values(name=CURSOR, position=position, updated_at=now)
    s.execute(
        stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={"position": stmt.excluded.position, "updated_at": stmt.excluded.updated_at},
            where=CursorRow.position < stmt.excluded.position,
        )
    )


def _result(outcome: Outcome, at: datetime) -> dict[str, object]:
    values: dict[str, object] = {
        "status": outcome.status.value,
        "last_status_code": outcome.status_code,
    }
    if outcome.error is not None:  # a delivery keeps the error of the attempt before it
        values["last_error"] = outcome.error
    if outcome.status is DeliveryStatus.DELIVERED:
        values["delivered_at"] = at
    if outcome.retry_at is not None:
        values["next_attempt_at"] = outcome.retry_at
    return values


def _due(now: datetime) -> ColumnElement[bool]:
    return (WebhookDeliveryRow.status == PENDING) & (WebhookDeliveryRow.next_attempt_at <= now)


class Webhooks:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    # -- subscriptions -------------------------------------------------------------------------

    def subscribe(
        self, url: str, events: Sequence[str], secret: str, description: str, now: datetime
    ) -> Subscription:
        """A new active subscription (url and events already checked by core.webhooks). It
        receives events not fanned out yet: the first one sets the cursor at the newest event,
        so it never receives the history written before it."""
        with self._sessions.write() as s:
            newest = int(s.scalar(select(func.max(EventRow.id))) or 0)
            stmt = insert_for(s)(CursorRow).values(name=CURSOR, position=newest, updated_at=now)
            s.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
            row = WebhookSubscriptionRow(
                url=url,
                events=list(events),
                secret=secret,
                description=description,
                active=True,
                created_at=now,
            )
            s.add(row)
            s.flush()
            return subscription_of(row)

    def subscriptions(self) -> list[Subscription]:
        with self._sessions.read() as s:
            rows = s.scalars(select(WebhookSubscriptionRow).order_by(WebhookSubscriptionRow.id))
            return [subscription_of(r) for r in rows]

    def subscription(self, subscription_id: int) -> Subscription | None:
        with self._sessions.read() as s:
            row = s.get(WebhookSubscriptionRow, subscription_id)
            return None if row is None else subscription_of(row)

    def unsubscribe(self, subscription_id: int) -> bool:
        """Remove a subscription with its deliveries (pending ones are never sent); False when
        there is none."""
        with self._sessions.write() as s:
            # Locked first: a fan-out adding a delivery for it now waits, then fails (and is
            # tried again without it), instead of this delete failing on that delivery.
            if s.get(WebhookSubscriptionRow, subscription_id, with_for_update=True) is None:
                return False
            s.execute(
                delete(WebhookDeliveryRow).where(
                    WebhookDeliveryRow.subscription_id == subscription_id
                )
            )
            gone = s.execute(
                delete(WebhookSubscriptionRow).where(WebhookSubscriptionRow.id == subscription_id)
            ).rowcount
        return bool(gone)

    # -- fan-out -------------------------------------------------------------------------------

    def cursor(self) -> int | None:
        """The last event fanned out (None: no subscription was ever made)."""
        with self._sessions.read() as s:
            row = s.get(CursorRow, CURSOR)
            return None if row is None else int(row.position)

    def fan_out(self, events: Sequence[Event], now: datetime, position: int | None = None) -> int:
        """One pending delivery, due now, per event and matching active subscription, and the
        cursor moved to `position` (default: past the events), in one transaction; returns the
        deliveries created (those another worker created first are not counted)."""
        if not events:
            return 0
        with self._sessions.write() as s:
            subs = [
                subscription_of(r)
                for r in s.scalars(
                    select(WebhookSubscriptionRow).where(WebhookSubscriptionRow.active)
                )
            ]
            values = [
                {"subscription_id": sub.subscription_id, "event_id": e.event_id}
                | {"status": PENDING, "attempts": 0, "next_attempt_at": now, "created_at": now}
                for e in events
                for sub in subs
                if sub.wants(e.kind)
            ]
            created = 0
            if values:
                stmt = insert_for(s)(WebhookDeliveryRow).values(values)
                stmt = stmt.on_conflict_do_nothing(index_elements=["subscription_id", "event_id"])
                # counted from RETURNING: a multi-row insert's rowcount is -1 on psycopg
                created = len(s.execute(stmt.returning(WebhookDeliveryRow.id)).all())
            _move_cursor(s, max(e.event_id for e in events) if position is None else position, now)
        return created

    # -- sending -------------------------------------------------------------------------------

    def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[Outgoing]:
        """Up to `limit` due pending deliveries, oldest due first, claimed for one attempt each
        until `now + lease`; none that another dispatcher holds. One UPDATE … WHERE id IN
        (the due ones) RETURNING, in one transaction."""
        with self._sessions.write() as s:
            due = (
                select(WebhookDeliveryRow.id)
                .where(_due(now))
                .order_by(WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.id)
                .limit(limit)
            )
            if s.get_bind().dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)  # another's claim is skipped
            ids = s.scalars(
                update(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.id.in_(due))
                .values(attempts=WebhookDeliveryRow.attempts + 1, next_attempt_at=now + lease)
                .returning(WebhookDeliveryRow.id)
            ).all()
            return self._outgoing(s, ids) if ids else []

    @staticmethod
    def _outgoing(s: Session, ids: Sequence[int]) -> list[Outgoing]:
        rows = s.execute(
            select(WebhookDeliveryRow, EventRow, WebhookSubscriptionRow)
            .join(EventRow, EventRow.id == WebhookDeliveryRow.event_id)
            .join(
                WebhookSubscriptionRow,
                WebhookSubscriptionRow.id == WebhookDeliveryRow.subscription_id,
            )
            .where(WebhookDeliveryRow.id.in_(ids))
            .order_by(WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.id)
            .execution_options(populate_existing=True)  # the values the UPDATE just wrote
        ).tuples()
        return [Outgoing(delivery_of(d), event_of(e), sub.url, sub.secret) for d, e, sub in rows]

    def record(self, outgoing: Outgoing, outcome: Outcome, now: datetime) -> bool:
        """The claimed attempt's result; False (nothing written) when the delivery no longer
        carries that attempt (its lease ran out and another dispatcher claimed it) or is gone."""
        return bool(self.record_all([(outgoing, outcome, now)]))

    def record_all(self, results: Sequence[tuple[Outgoing, Outcome, datetime]]) -> set[int]:
        """Several attempts' results (each with the time it ended), in one transaction; the
        ids of the deliveries recorded (`record` says which are not)."""
        recorded = set()
        with self._sessions.write() as s:
            for outgoing, outcome, at in results:
                claimed = outgoing.delivery
                done = s.execute(
                    update(WebhookDeliveryRow)
                    .where(
                        WebhookDeliveryRow.id == claimed.delivery_id,
                        WebhookDeliveryRow.attempts == claimed.attempts,
                        WebhookDeliveryRow.status == PENDING,
                    )
                    .values(**_result(outcome, at))
                ).rowcount
                if done:
                    recorded.add(claimed.delivery_id)
        return recorded

    # -- the dead-letter queue -----------------------------------------------------------------

    def deliveries(
        self, subscription_id: int, status: DeliveryStatus | None = None, limit: int = 100
    ) -> list[Delivery]:
        """A subscription's deliveries, newest first."""
        q = (
            select(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.subscription_id == subscription_id)
            .order_by(WebhookDeliveryRow.id.desc())
            .limit(limit)
        )
        if status is not None:
            q = q.where(WebhookDeliveryRow.status == status.value)
        with self._sessions.read() as s:
            return [delivery_of(r) for r in s.scalars(q)]

    def delivery(self, delivery_id: int) -> Delivery | None:
        with self._sessions.read() as s:
            row = s.get(WebhookDeliveryRow, delivery_id)
            return None if row is None else delivery_of(row)

    def replay(self, subscription_id: int, now: datetime, delivery_id: int | None = None) -> int:
        """Send again: every dead delivery of the subscription, or the one named (dead or
        delivered), back to pending, due now, with its attempts reset; returns how many."""
        statuses = [DeliveryStatus.DEAD.value]
        q = update(WebhookDeliveryRow).where(WebhookDeliveryRow.subscription_id == subscription_id)
        if delivery_id is not None:
            statuses.append(DeliveryStatus.DELIVERED.value)
            q = q.where(WebhookDeliveryRow.id == delivery_id)
        q = q.where(WebhookDeliveryRow.status.in_(statuses)).values(
            status=PENDING, attempts=0, next_attempt_at=now, delivered_at=None
        )
        with self._sessions.write() as s:
            return int(s.execute(q).rowcount)
