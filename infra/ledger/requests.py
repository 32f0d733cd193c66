"""Signed safety requests (kill switch, breaker reset). An accepted request uses its signature
up, changes its control, is recorded and notes the trading state: one transaction. Refusals are
kept in detail only up to a per-client budget per minute; beyond it they are only counted, in
10-second buckets per client, so a flood costs a counter update, not a row each. Accepted
requests are kept forever; refusals and their counters are pruned after the retention period."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import SignatureReplayed
from core.records import KillSwitchState, SafetyRequest
from core.risk.state import Control
from infra.ledger.dialect import insert_for
from infra.ledger.models import (
    KillSwitchEventRow,
    RefusalCountRow,
    RefusalTotalRow,
    SafetyEventRow,
    SafetyStateRow,
    UsedSignatureRow,
)
from infra.ledger.safety import announce_control_in, note_trading_state_in, set_control_in
from infra.ledger.sessions import Sessions

BUCKET_S = 10
CLIENT_CHARS = 128  # the column's width: longer client names are cut, never refused by the db


def bucket_of(at: datetime) -> datetime:
    seconds = int(at.timestamp()) // BUCKET_S * BUCKET_S
    return datetime.fromtimestamp(seconds, tz=UTC)


def hour_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _bump_totals(s: Session, now: datetime) -> None:
    """Everyone's refusals, counted per 10 seconds and per hour, beside the per-client ones."""
    insert = insert_for(s)
    for granularity, start in (("10s", bucket_of(now)), ("1h", hour_of(now))):
        stmt = insert(RefusalTotalRow).values(
            granularity=granularity, window_start=start, refusals=1
        )
        s.execute(
            stmt.on_conflict_do_update(
                index_elements=["granularity", "window_start"],
                set_={"refusals": RefusalTotalRow.refusals + 1},
            )
        )


def _client_key(client: str | None) -> str:
    return (client or "")[:CLIENT_CHARS]


def _attempt(
    now: datetime,
    action: str | None,
    reason: str | None,
    client: str | None,
    request_timestamp: int | None,
    rejection: str | None = None,
) -> KillSwitchEventRow:
    return KillSwitchEventRow(
        at=now,
        action=action,
        accepted=rejection is None,
        reason=reason,
        rejection=rejection,
        client=None if client is None else _client_key(client),
        request_timestamp=request_timestamp,
    )


class SafetyRequests:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    @contextmanager
    def _signed(
        self,
        signature: str,
        now: datetime,
        action: str,
        reason: str,
        client: str | None,
        request_timestamp: int,
    ) -> Iterator[Session]:
        """One transaction for an authenticated request: the signature is used up (a replay
        raises SignatureReplayed), the change is made, the attempt recorded, the state noted.
        Any other conflict (two first activations at once) is the database's to report."""
        try:
            with self._sessions.write() as s:
                s.add(UsedSignatureRow(signature=signature, used_at=now))
                s.flush()
                yield s
                s.add(_attempt(now, action, reason, client, request_timestamp))
                s.flush()
                note_trading_state_in(s, now)
        except IntegrityError as exc:
            if self._used(signature):
                raise SignatureReplayed("signature already used (replay)") from exc
            raise

    def _used(self, signature: str) -> bool:
        with self._sessions.read() as s:
            return s.get(UsedSignatureRow, signature) is not None

    def set_kill_switch(
        self,
        active: bool,
        reason: str,
        signature: str,
        now: datetime,
        client: str | None,
        request_timestamp: int,
    ) -> KillSwitchState:
        """Apply an authenticated request; a repeated activation keeps the first one's time and
        reason, so it finds the same closing orders (a no-op)."""
        action = "activate" if active else "deactivate"
        with self._signed(signature, now, action, reason, client, request_timestamp) as s:
            row = s.get(SafetyStateRow, Control.KILL_SWITCH.value, with_for_update=True)
            if row is None or row.active != active:
                row = set_control_in(s, Control.KILL_SWITCH.value, active, reason, now)
                announce_control_in(s, row, "activated" if active else "cleared", now)
            state = KillSwitchState(row.active, row.reason, row.changed_at)
        return state  # an activation while active keeps the first one's time and reason

    def reset_circuit_breaker(
        self,
        reason: str,
        signature: str,
        now: datetime,
        client: str | None,
        request_timestamp: int,
    ) -> bool:
        """An authenticated early reset; True when the breaker was tripped."""
        name = Control.CIRCUIT_BREAKER.value
        with self._signed(signature, now, "breaker_reset", reason, client, request_timestamp) as s:
            row = s.get(SafetyStateRow, name, with_for_update=True)
            was = bool(row and row.active)
            # A breaker that was not tripped is left as it is: its clearing time is the moment
            # its thresholds count from (services.circuit_breaker).
            if row is not None and was:
                row = set_control_in(s, name, False, reason, now)
                announce_control_in(s, row, "reset_early", now)
            s.add(
                SafetyEventRow(
                    at=now,
                    control=name,
                    step="reset_early" if was else "reset_not_tripped",
                    detail={"reason": reason, "client": client},
                )
            )
        return was

    def record_refusal(
        self,
        action: str | None,
        reason: str | None,
        rejection: str,
        now: datetime,
        client: str | None,
        request_timestamp: int | None,
        detail_budget: int = 10,
    ) -> int:
        """Count a refused request for its client; keep its details while the client has
        fewer than `detail_budget` refusals in the last minute. Returns that count before this
        one (what a rate limit compares)."""
        key = _client_key(client)
        with self._sessions.write() as s:
            recent = self._count(s, key, now - timedelta(seconds=60))
            insert = insert_for(s)(RefusalCountRow).values(
                client=key, window_start=bucket_of(now), refusals=1
            )
            s.execute(
                insert.on_conflict_do_update(
                    index_elements=["client", "window_start"],
                    set_={"refusals": RefusalCountRow.refusals + 1},
                )
            )
            _bump_totals(s, now)
            if recent < detail_budget:
                s.add(_attempt(now, action, reason, client, request_timestamp, rejection))
        return recent

    @staticmethod
    def _count(s: Session, client: str, since: datetime) -> int:
        total = s.scalar(
            select(func.sum(RefusalCountRow.refusals)).where(
                RefusalCountRow.client == client, RefusalCountRow.window_start >= bucket_of(since)
            )
        )
        return int(total or 0)

    def count_refusals(self, client: str | None, since: datetime) -> int:
        with self._sessions.read() as s:
            return self._count(s, _client_key(client), since)

    def recent(self, limit: int = 20, accepted: bool | None = None) -> list[SafetyRequest]:
        """The newest requests answered, newest first (only accepted ones if `accepted`)."""
        q = select(KillSwitchEventRow)
        if accepted is not None:
            q = q.where(KillSwitchEventRow.accepted.is_(accepted))
        with self._sessions.read() as s:
            rows = s.scalars(q.order_by(KillSwitchEventRow.id.desc()).limit(limit))
            return [
                SafetyRequest(r.at, r.action, r.accepted, r.reason, r.rejection, r.client)
                for r in rows
            ]

    def prune_refusals(self, before: datetime) -> int:
        """Delete refused requests and their counters older than `before`; accepted requests
        stay. Returns how many refused requests were deleted."""
        with self._sessions.write() as s:
            gone = s.execute(
                delete(KillSwitchEventRow).where(
                    KillSwitchEventRow.accepted.is_(False), KillSwitchEventRow.at < before
                )
            ).rowcount
            s.execute(delete(RefusalCountRow).where(RefusalCountRow.window_start < before))
            s.execute(delete(RefusalTotalRow).where(RefusalTotalRow.window_start < before))
        return gone or 0
