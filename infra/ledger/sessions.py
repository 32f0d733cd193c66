"""Sessions for the ledger's stores, with the database's errors translated once, here.

`read()` is a session for queries; `write()` is one transaction: it commits whole on leaving the
block or rolls back whole on an exception, so a store method writes everything or nothing.
A database that does not answer becomes LedgerUnavailable (retryable: nothing was written);
one that cannot be used as configured becomes LedgerMisconfigured (fatal: retrying won't help).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, Executable, Row
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import LedgerMisconfigured, LedgerUnavailable

# Connection-time refusals that no retry can fix (PostgreSQL and SQLite wordings).
_FATAL_MARKERS = (
    "does not exist",
    "authentication failed",
    "unable to open database file",
    "no password supplied",
)


def translate(exc: OperationalError | InterfaceError) -> LedgerUnavailable | LedgerMisconfigured:
    first_line = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else repr(exc)
    if any(marker in first_line for marker in _FATAL_MARKERS):
        return LedgerMisconfigured(f"ledger database unusable: {first_line}")
    return LedgerUnavailable(f"ledger database unavailable: {first_line}")


class Sessions:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory
        self._engine: Engine = factory.kw["bind"]

    @property
    def dialect(self) -> Dialect:
        return self._engine.dialect

    @property
    def url(self) -> str:
        """The engine's URL, password included: what another process connects with."""
        return self._engine.url.render_as_string(hide_password=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        try:
            with self._factory() as session:
                yield session
        except (OperationalError, InterfaceError) as exc:
            raise translate(exc) from exc

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A plain connection for the read models: rows as tuples, no ORM bookkeeping."""
        try:
            with self._engine.connect() as connection:
                yield connection
        except (OperationalError, InterfaceError) as exc:
            raise translate(exc) from exc

    def rows(self, query: Executable, params: Mapping[str, Any] | None = None) -> list[Row[Any]]:
        """A read's rows, an entity's columns by their names, without an ORM session: opening
        and closing one cost more than the query (a live decision makes some twenty reads).
        `params` fill the query's bindparams: a statement built once and executed with its
        values costs a third of one built per call."""
        with self.connect() as connection:
            return list(connection.execute(query, params))

    def scalar(self, query: Executable, params: Mapping[str, Any] | None = None) -> Any:
        """The first column of the first row (None when there is none), as `rows` reads."""
        with self.connect() as connection:
            return connection.execute(query, params).scalar()

    @contextmanager
    def write(self) -> Iterator[Session]:
        try:
            with self._factory() as session, session.begin():
                yield session
        except (OperationalError, InterfaceError) as exc:
            raise translate(exc) from exc
