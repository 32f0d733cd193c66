"""A bulk writer's WAL checkpoints, on a thread of their own.

SQLite copies its write-ahead log back into the database file (a checkpoint) inside the commit
that fills it past `wal_autocheckpoint` pages, and syncs both files as it does (WAL's
synchronous=NORMAL syncs there and nowhere else). For a backtest's decision writer, committing
5,000 rows at a time, that was a fifth of its database time: the writer waited for the disk.
Here its connections never checkpoint; after each commit a thread of the same process asks for
a PASSIVE checkpoint on a connection of its own. The sqlite3 module lets go of the interpreter
while SQLite works, so the writer goes on inserting meanwhile. A PASSIVE checkpoint takes no
lock a writer waits for; when it has copied every committed page before the writer's next
commit, that commit starts the log again from its beginning, and the log stays a commit or two
long. A writer that commits faster than its pages are copied keeps SQLite's own checkpoint as a
backstop (infra.ledger.database.bulk_sessions): at that length, its commit checkpoints what is
left, as any SQLite connection does. What is synced, and when a power cut may lose the newest
commits, is unchanged.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("tradeflow.ledger")


class WalCheckpoints:
    """Checkpoints `engine`'s SQLite ledger after each commit of the sessions it is attached to
    (`attach`), on a daemon thread, until `close`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._changed = threading.Condition()
        self._commits = 0  # commits seen
        self._covered = 0  # commits a finished checkpoint began after
        self._closing = False
        self.failure: str | None = None  # the last checkpoint's error (the next one retries)
        self._thread = threading.Thread(target=self._run, name="wal-checkpoints", daemon=True)
        self._thread.start()

    def attach(self, sessions: sessionmaker[Session]) -> None:
        event.listen(sessions, "after_commit", self._committed)

    def wait(self, timeout: float) -> bool:
        """Whether every commit so far has been checkpointed within `timeout` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self._covered == self._commits, timeout)

    def close(self, timeout: float = 10.0) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join(timeout)

    def _committed(self, _session: Session) -> None:
        with self._changed:
            self._commits += 1
            self._changed.notify_all()

    def _run(self) -> None:
        try:
            raw = self._engine.raw_connection()
        except Exception as exc:  # the backstop checkpoints instead: said, not silent
            self._failed(exc)
            return
        try:
            while True:
                with self._changed:
                    self._changed.wait_for(lambda: self._closing or self._covered < self._commits)
                    if self._closing:
                        return
                    upto = self._commits
                self._checkpoint(raw)
                with self._changed:
                    self._covered = upto
                    self._changed.notify_all()
        finally:
            raw.close()

    def _checkpoint(self, raw: Any) -> None:
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception as exc:  # the writer's rows are committed: only their copy is late
            self._failed(exc)
        else:
            self.failure = None

    def _failed(self, exc: Exception) -> None:
        failure = f"{type(exc).__name__}: {exc}"
        if failure != self.failure:  # once per kind of failure, not once per commit
            log.warning("WAL checkpoint failed (SQLite's own checkpoint still runs): %s", failure)
        self.failure = failure
