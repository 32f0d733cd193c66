"""A bulk writer's WAL is checkpointed by a thread after each commit (bulk_sessions): the log
stays about a commit long however many commits come, where the writer's own connection would
let it grow; every row is in the file after a checkpoint; PostgreSQL needs none."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from infra.ledger.database import bulk_sessions, make_engine

COMMITS = 30
ROWS = 400  # of ~1 KiB each: about 25 pages of 16 KiB a commit


def _write(sessions: sessionmaker[Session], after_each: object = None) -> None:
    with sessions() as s:
        s.execute(text("CREATE TABLE IF NOT EXISTS t (i INTEGER, pad TEXT)"))
        s.commit()
    for k in range(COMMITS):
        with sessions() as s:
            rows = [{"i": k * ROWS + j, "pad": "x" * 1_000} for j in range(ROWS)]
            s.execute(text("INSERT INTO t VALUES (:i, :pad)"), rows)
            s.commit()
        if callable(after_each):
            after_each()


def _wal_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


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
        one_commit = ROWS * 1_000
        assert _wal_bytes(path) < 4 * one_commit
        with sqlite3.connect(path) as c:  # another connection reads every row
            assert c.execute("SELECT count(*) FROM t").fetchone() == (COMMITS * ROWS,)
    finally:
        checkpoints.close()
        sessions.kw["bind"].dispose()


def test_bulk_engine_when_no_checkpoint_thread_then_its_wal_grows_with_each_commit(
    tmp_path: Path,
) -> None:
    """What the thread prevents: the bulk engine's connections never checkpoint themselves."""
    path = tmp_path / "bulk.db"
    engine: Engine = make_engine(f"sqlite:///{path}", durable=False)
    try:
        _write(sessionmaker(engine))
        assert _wal_bytes(path) > COMMITS * ROWS * 1_000
    finally:
        engine.dispose()


def test_bulk_sessions_when_closed_then_its_thread_has_ended(tmp_path: Path) -> None:
    sessions, checkpoints = bulk_sessions(f"sqlite:///{tmp_path / 'bulk.db'}")
    assert checkpoints is not None
    _write(sessions)
    checkpoints.close()
    assert not checkpoints._thread.is_alive()
    sessions.kw["bind"].dispose()


def test_bulk_sessions_when_postgresql_then_no_checkpoint_thread() -> None:
    sessions, checkpoints = bulk_sessions("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    assert checkpoints is None
    sessions.kw["bind"].dispose()
