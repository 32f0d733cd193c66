"""Drift checks of the champion: one row per check, read back newest first. The debounce of
drift-triggered retraining reads the newest check that triggered one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update

from core.errors import FatalError
from core.records import DriftCheck
from infra.ledger.models import DriftCheckRow
from infra.ledger.sessions import Sessions

# Every field but the id, which the ledger gives.
_FIELDS = tuple(f for f in DriftCheck.__dataclass_fields__ if f != "id")


class UnknownDriftCheck(FatalError):
    """No stored check has the id given."""


class DriftChecks:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def save(self, check: DriftCheck) -> int:
        """Store one check (its `id`, if any, is ignored); returns the id it was given."""
        values = {name: getattr(check, name) for name in _FIELDS}
        values["drifted_columns"] = list(check.drifted_columns)  # JSON: a list, not a tuple
        row = DriftCheckRow(**values)
        with self._sessions.write() as s:
            s.add(row)
            s.flush()
            return int(row.id)

    def set_flow_run(self, check_id: int, flow_run_id: str) -> None:
        """The retraining run a stored check started. Idempotent: setting the same id again
        changes nothing, so a retried write is harmless."""
        q = update(DriftCheckRow).where(DriftCheckRow.id == check_id)
        with self._sessions.write() as s:
            found = s.execute(q.values(flow_run_id=flow_run_id)).rowcount
        if not found:
            raise UnknownDriftCheck(
                f"no drift check with id {check_id} to set run {flow_run_id} on"
            )

    def latest(self, model_name: str | None = None) -> DriftCheck | None:
        """The newest check (of `model_name`, when given)."""
        found = self.recent(model_name, limit=1)
        return found[0] if found else None

    def recent(self, model_name: str | None = None, limit: int = 20) -> list[DriftCheck]:
        q = select(DriftCheckRow)
        if model_name is not None:
            q = q.where(DriftCheckRow.model_name == model_name)
        # The id breaks ties between checks stored with the same time, newest write first.
        q = q.order_by(DriftCheckRow.checked_at.desc(), DriftCheckRow.id.desc()).limit(limit)
        with self._sessions.read() as s:
            return [_check_of(r) for r in s.scalars(q)]

    def last_triggered(self, model_name: str) -> datetime | None:
        """When a check of `model_name` last triggered retraining; None if none ever did. Any
        version counts: a retraining replaces the version, the debounce is the model's."""
        q = (
            select(DriftCheckRow.checked_at)
            .where(
                DriftCheckRow.model_name == model_name, DriftCheckRow.retrain_triggered.is_(True)
            )
            .order_by(DriftCheckRow.checked_at.desc())
            .limit(1)
        )
        with self._sessions.read() as s:
            return s.scalar(q)


def _check_of(row: DriftCheckRow) -> DriftCheck:
    values = {name: getattr(row, name) for name in _FIELDS}
    values["drifted_columns"] = tuple(row.drifted_columns)
    return DriftCheck(id=row.id, **values)


__all__: Sequence[str] = ("DriftChecks", "UnknownDriftCheck")
