"""Wakes a reader of the outbox when another process commits an event: PostgreSQL delivers the
NOTIFY that infra.ledger.events.append sends (channel `tradeflow_events`) at commit, to every
connection that LISTENs. SQLite has nothing like it: its readers poll.

The listener is a hint, never the data: a reader still reads `Events.after(cursor)`, so a lost
notification (a dropped connection, a listener that starts late) costs only latency, until the
reader's own slow poll.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
from sqlalchemy.engine import make_url

from infra.ledger.events import NOTIFY_CHANNEL

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 5


def libpq_dsn(ledger_url: str) -> str:
    """The SQLAlchemy URL of a PostgreSQL ledger as psycopg takes it (query options kept)."""
    return make_url(ledger_url).set(drivername="postgresql").render_as_string(hide_password=False)


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
            connection = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
            )
            await connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._connection = connection
        return self._connection

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.closed:
            await connection.close()
