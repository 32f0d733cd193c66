"""A bulk writer's WAL is checkpointed by a thread after each commit (bulk_sessions): the log
stays about a commit long however many commits come; a writer that outruns the thread is held
to SQLite's own checkpoint at `backstop_pages`; every row is in the file after a checkpoint; a
thread that cannot checkpoint says so; PostgreSQL needs none."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from infra.ledger.checkpoints import WalCheckpoints
from infra.ledger.database import BULK_CHECKPOINT_PAGES, bulk_sessions

COMMITS = 30
ROWS = 400  # of ~1 KiB each: about 25 pages of 16 KiB a commit
ONE_COMMIT = ROWS * 1_000


def _write(
    sessions: sessionmaker[Session], after_each: Callable[[], object] = lambda: None
) -> None:
    with sessions() as s:
        s.execute(text("CREATE TABLE IF NOT EXISTS t (i INTEGER, pad TEXT)"))
        s.commit()
    for k in range(COMMITS):
        with sessions() as s:
            rows = [{"i": k * ROWS + j, "pad": "x" * 1_000} for j in range(ROWS)]
            s.execute(text("INSERT INTO t VALUES (:i, :pad)"), rows)
            s.commit()
        after_each()


def _wal_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def _pragma(sessions: sessionmaker[Session], name: str) -> int:
    with sessions() as s:
        return int(s.execute(text(f"PRAGMA {name}")).scalar_one())


def test_bulk_sessions_when_many_commits_then_the_wal_stays_a_commit_or_two_long(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bulk.db"
    sessions, checkpoints = bulk_sessions(f"sqlite:///{path}")
    assert checkpoints is not None
    try:
        _write(sessions, after_each=lambda: checkpoints.wait(10.0))
        assert checkpoints.wait(10.0)
        assert checkpoints.failure is None
        assert _wal_bytes(path) < 4 * ONE_COMMIT
        with sqlite3.connect(path) as c:  # another connection reads every row
            assert c.execute("SELECT count(*) FROM t").fetchone() == (COMMITS * ROWS,)
    finally:
        checkpoints.close()
        sessions.kw["bind"].dispose()


@pytest.mark.parametrize(("backstop", "most"), [(0, None), (50, 6 * ONE_COMMIT)])
def test_bulk_sessions_when_the_thread_is_behind_then_the_backstop_bounds_the_wal(
    tmp_path: Path, backstop: int, most: int | None
) -> None:
    """The thread stopped (the worst lag): the writer's own checkpoint at `backstop` pages is
    what keeps the log short; without one (0) the log holds every commit."""
    path = tmp_path / "bulk.db"
    sessions, checkpoints = bulk_sessions(f"sqlite:///{path}", backstop_pages=backstop)
    assert checkpoints is not None
    checkpoints.close()
    try:
        assert _pragma(sessions, "wal_autocheckpoint") == backstop
        _write(sessions)
        if most is None:
            assert _wal_bytes(path) > COMMITS * ONE_COMMIT
        else:
            assert _wal_bytes(path) < most
    finally:
        sessions.kw["bind"].dispose()


def test_bulk_sessions_when_made_then_not_synced_and_checkpointed_late(tmp_path: Path) -> None:
    sessions, checkpoints = bulk_sessions(f"sqlite:///{tmp_path / 'bulk.db'}")
    assert checkpoints is not None
    try:
        assert _pragma(sessions, "synchronous") == 1  # NORMAL
        assert _pragma(sessions, "wal_autocheckpoint") == BULK_CHECKPOINT_PAGES
        assert _pragma(sessions, "journal_size_limit") == 64 * 2**20
    finally:
        checkpoints.close()
        sessions.kw["bind"].dispose()


def test_bulk_sessions_when_closed_then_its_thread_has_ended(tmp_path: Path) -> None:
    sessions, checkpoints = bulk_sessions(f"sqlite:///{tmp_path / 'bulk.db'}")
    assert checkpoints is not None
    _write(sessions)
    checkpoints.close()
    assert not checkpoints._thread.is_alive()
    sessions.kw["bind"].dispose()


def test_checkpoints_when_the_ledger_cannot_be_opened_then_the_failure_is_kept_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'ledger.db'}")
    with caplog.at_level(logging.WARNING, logger="tradeflow.ledger"):
        checkpoints = WalCheckpoints(engine)
        checkpoints._thread.join(10.0)
    assert not checkpoints._thread.is_alive()
    assert checkpoints.failure is not None
    assert checkpoints.failure.startswith("OperationalError: ")
    assert "WAL checkpoint failed" in caplog.text
    engine.dispose()


def test_bulk_sessions_when_postgresql_then_no_checkpoint_thread() -> None:
    sessions, checkpoints = bulk_sessions("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    assert checkpoints is None
    sessions.kw["bind"].dispose()
