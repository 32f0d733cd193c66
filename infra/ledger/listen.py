"""Hears the outbox's news on PostgreSQL, which delivers the NOTIFY that
infra.ledger.events.append sends (channel `tradeflow_events`) at commit to every connection that
LISTENs. SQLite has nothing like it: its readers poll.

- OutboxListener wakes a reader of the outbox (the WebSocket hub). It is a hint, never the
  data: the reader still reads `Events.after(cursor)`, so a lost notification (a dropped
  connection, a listener that starts late) costs only latency, until the reader's own slow poll.
- OutboxWatch counts the notifications, so the API knows without a query that nothing has
  committed since it built an answer (serving/page_cache.py); FileWatch tells the same on
  SQLite from the file's data version.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Any
from urllib.parse import quote

import psycopg
from sqlalchemy.engine import make_url

from infra.ledger.events import NOTIFY_CHANNEL

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 5


def libpq_dsn(ledger_url: str) -> str:
    """The SQLAlchemy URL of a PostgreSQL ledger as psycopg takes it (query options kept)."""
    return make_url(ledger_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def listening(dsn: str) -> psycopg.AsyncConnection[object]:
    """A new connection (psycopg async, autocommit) that LISTENs to the outbox's channel."""
    connection: psycopg.AsyncConnection[object] = await psycopg.AsyncConnection.connect(
        dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
    )
    try:
        await connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
    except BaseException:
        await connection.close()
        raise
    return connection


class OutboxListener:
    """One LISTEN connection (psycopg async, autocommit), opened on first use and opened again
    after a failure."""

    def __init__(self, ledger_url: str) -> None:
        self._dsn = libpq_dsn(ledger_url)
        self._connection: psycopg.AsyncConnection[object] | None = None
        self._failing = False

    async def wait(self, timeout: float) -> bool:
        """Until a notification arrives (True) or `timeout` seconds pass (False). A database
        that does not answer is logged once per outage and waited out as a timeout."""
        try:
            connection = await self._connect()
            woken = False
            # Iterated to its end (stop_after ends it): leaving the generator early would hold
            # the connection's lock until it is collected.
            async for _ in connection.notifies(timeout=timeout, stop_after=1):
                woken = True
        except psycopg.Error as exc:
            if not self._failing:
                log.warning("outbox listener down, polling until it is back: %s", exc)
            self._failing = True
            await self.aclose()
            await asyncio.sleep(timeout)
            return False
        if self._failing:
            log.info("outbox listener back")
            self._failing = False
        return woken

    async def _connect(self) -> psycopg.AsyncConnection[object]:
        if self._connection is None or self._connection.closed:
            self._connection = await listening(self._dsn)
        return self._connection

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.closed:
            await connection.close()


RETRY_S = 1.0  # OutboxWatch: the first pause after a failure, doubled up to MAX_RETRY_S
MAX_RETRY_S = 30.0
PING_EVERY_S = 5.0  # OutboxWatch: a quiet connection is asked for a sign of life this often
PING_TIMEOUT_S = 2.0


class OutboxWatch:
    """A generation number that moves on whenever a transaction that wrote the outbox commits,
    counted on a LISTEN connection of its own for as long as `run` runs.

    `generation` is None while that connection is down, since then nothing can be known without
    a read; it also moves on when the connection (re)opens, as events may have been missed
    meanwhile, and on `touch()`, which this process calls after a write of its own so that its
    next read does not wait for the notification to come back. Orders, fills, positions,
    decisions, the kill switch and the breaker write an event in the transaction of their change
    (infra.ledger.news), so two equal generations mean that none of those committed in between.
    What writes no event (a new candle, the reconciliation and operator controls, a refused
    request) and a connection cut without a word (found by the next ping, within PING_EVERY_S +
    PING_TIMEOUT_S) are bounded by the age readers give what they keep.
    """

    def __init__(
        self, ledger_url: str, retry_s: float = RETRY_S, max_retry_s: float = MAX_RETRY_S
    ) -> None:
        self._dsn = libpq_dsn(ledger_url)
        self._retry_s, self._max_retry_s = retry_s, max_retry_s
        self._count = 0
        self._live = False

    @property
    def generation(self) -> int | None:
        return self._count if self._live else None

    def touch(self) -> None:
        self._count += 1

    async def run(self) -> None:
        """Listen until cancelled, opening the connection again after a failure (the pause
        doubling, up to max_retry_s, while the failures last)."""
        pause, failing = self._retry_s, False
        while True:
            try:
                async with await listening(self._dsn) as connection:
                    self._count += 1  # whatever committed while nobody listened
                    self._live = True
                    if failing:
                        log.info("outbox watch back")
                    pause, failing = self._retry_s, False
                    await self._follow(connection)
            except (psycopg.Error, TimeoutError) as exc:
                if failing:
                    pause = min(pause * 2, self._max_retry_s)
                else:
                    log.warning("outbox watch down, answers are not kept until it is back: %s", exc)
                failing = True
            finally:
                self._live = False
            await asyncio.sleep(pause)

    async def _follow(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """Count notifications; when none came for PING_EVERY_S, ask the server for a sign of
        life within PING_TIMEOUT_S: a connection cut without a word (a partition, a NAT that
        forgot it) raises TimeoutError here instead of keeping the count live forever. A ping
        also counts, as a notification could come while nobody was reading."""
        while True:
            async for _ in connection.notifies(timeout=PING_EVERY_S):
                self._count += 1
            await asyncio.wait_for(connection.execute("SELECT 1"), PING_TIMEOUT_S)
            self._count += 1


class FileWatch:
    """SQLite's counterpart of OutboxWatch: `PRAGMA data_version` on a connection of its own
    that never writes changes whenever any other connection, in any process, commits to the
    database file. It reads no table and waits for no lock (a few microseconds; a busy file is
    an unknown generation), so it is asked on every `generation`; any commit moves the
    generation on, not only those with an event, and so does opening the connection again."""

    def __init__(self, path: str) -> None:
        # Opened on first use, never creating the file (the API starts while the ledger may
        # not exist yet); read-write, as a read-only one cannot open a WAL file's index.
        self._uri = f"file:{quote(path)}?mode=rw"
        self._connection: sqlite3.Connection | None = None
        self._seen: int | None = None
        self._count = 0

    @property
    def generation(self) -> int | None:
        try:
            if self._connection is None:
                # timeout=0: never wait for a lock on the event loop; busy means unknown.
                self._connection = sqlite3.connect(
                    self._uri, uri=True, timeout=0, check_same_thread=False
                )
                self._seen = None  # another connection's versions cannot be compared
            version = int(self._connection.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:  # no file yet, or unreadable: nothing is known, nothing kept
            self._close()
            return None
        if version != self._seen:
            self._seen = version
            self._count += 1
        return self._count

    def touch(self) -> None:
        self._count += 1

    async def run(self) -> None:
        """Nothing to keep running: the file is asked on every `generation`."""
        try:
            await asyncio.Event().wait()
        finally:
            self._close()

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def watch_for(ledger_url: str) -> OutboxWatch | FileWatch | None:
    """A count of the outbox's notifications on PostgreSQL, the file's data version on SQLite;
    None for an in-memory SQLite ledger (no other connection can write it)."""
    if ledger_url.startswith("postgresql"):
        return OutboxWatch(ledger_url)
    path = make_url(ledger_url).database
    return FileWatch(path) if path and path != ":memory:" else None
