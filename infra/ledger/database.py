"""Engines, sessions and migrations for the ledger (SQLite or PostgreSQL)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from core.errors import FatalError
from infra.ledger.checkpoints import WalCheckpoints
from infra.ledger.json_text import dumps

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


# A new SQLite ledger's page: 16 KiB, not 4. Most of what a ledger writes is appended rows of
# about 660 bytes (decisions, hundreds of thousands per backtest): larger pages split less and
# cost less per row (a backtest's decision inserts 5.3-5.6 -> 4.2 us a row, with checkpoints
# every 4,000 pages then). SQLite fixes the page size when the file is made; an existing ledger
# keeps its own.
_PAGE_SIZE = 16_384


# A bulk writer's own checkpoint, behind its checkpoint thread (bulk_sessions): only a log this
# long (128 MiB of 16 KiB pages) is checkpointed inside a commit, and a log reset after one is
# cut back to 64 MiB on disk.
BULK_CHECKPOINT_PAGES = 8_000
_BULK_WAL_BYTES = 64 * 2**20


def make_engine(url: str, durable: bool = True) -> Engine:
    """An engine for the ledger at `url`. Not `durable`: a SQLite commit is not synced to disk
    (WAL's synchronous=NORMAL: a power cut may lose the newest commits, never corrupt the
    file), for writers whose work is redone if lost (a backtest's decision writer)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Enough pooled connections for the API's thread pool: a connection opened and closed
        # per request (the default pool keeps 5) costs more than the query it serves.
        engine = create_engine(
            url,
            connect_args={"timeout": 30},
            pool_size=20,
            max_overflow=20,
            json_serializer=dumps,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA page_size={_PAGE_SIZE}")  # a new file's only: see _PAGE_SIZE
            cur.execute("PRAGMA journal_mode=WAL")
            if not durable:
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_size=10, max_overflow=20, json_serializer=dumps
    )


def bulk_sessions(
    url: str, backstop_pages: int = BULK_CHECKPOINT_PAGES
) -> tuple[sessionmaker[Session], WalCheckpoints | None]:
    """Sessions of a bulk writer whose work is redone if lost (`make_engine`, not durable) and,
    on SQLite, the thread that checkpoints after its commits (infra.ledger.checkpoints). Its
    own commits checkpoint only a log of `backstop_pages`: one the thread fell behind on."""
    engine = make_engine(url, durable=False)
    sessions = sessionmaker(engine, expire_on_commit=False)
    if engine.dialect.name != "sqlite":
        return sessions, None

    @event.listens_for(engine, "connect")
    def _backstop(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.execute(f"PRAGMA wal_autocheckpoint={int(backstop_pages)}")
        dbapi_conn.execute(f"PRAGMA journal_size_limit={_BULK_WAL_BYTES}")

    checkpoints = WalCheckpoints(engine)
    checkpoints.attach(sessions)
    return sessions, checkpoints


@lru_cache(maxsize=16)
def engine_for(url: str) -> Engine:
    return make_engine(url)


@lru_cache(maxsize=16)
def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url), expire_on_commit=False)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


class MigrationError(FatalError):
    pass


def migrate(url: str, revision: str = "head", downgrade: bool = False) -> None:
    """Bring the ledger at `url` to `revision` (newest by default; safe on every start).

    On SQLite, Alembic rebuilds a table to alter a column, which foreign keys would refuse
    mid-way; they are switched off for the migration (outside its transaction, where SQLite
    honours the pragma), checked after it, and switched back on.
    """
    engine = engine_for(url)
    cfg = alembic_config(url)
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()  # ends SQLAlchemy's autobegun transaction; pysqlite began none
        try:
            with connection.begin():
                cfg.attributes["connection"] = connection
                if downgrade:
                    command.downgrade(cfg, revision)
                else:
                    command.upgrade(cfg, revision)
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise MigrationError(f"foreign keys broken by the migration: {broken[:5]}")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()
