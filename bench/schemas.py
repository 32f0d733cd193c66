"""Throwaway PostgreSQL schemas for the benches: a run never touches a real ledger's rows, and
every schema it made is dropped at the end (also when it fails)."""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, text

from infra.ledger.database import engine_for


def fresh_schema(database_url: str, prefix: str = "bench") -> tuple[str, str]:
    """(schema, a URL whose connections use it) for a new schema named `<prefix>_<hex>`."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(database_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    sep = "&" if "?" in database_url else "?"
    return schema, f"{database_url}{sep}options=-csearch_path%3D{schema}"


def drop_schema(database_url: str, schema: str, url: str | None = None) -> None:
    if url is not None:
        engine_for(url).dispose()  # connections still held by this process
    admin = create_engine(database_url)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


def drop_schemas(database_url: str, prefix: str = "bench") -> None:
    """Every schema named `<prefix>_…`: what runs of this bench left."""
    engine_for.cache_clear()
    admin = create_engine(database_url)
    with admin.begin() as conn:
        like = prefix.replace("_", "\\\\_") + "\\\\_%"
        names = list(conn.execute(
            text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"), {"p": like}
        ).scalars())  # fmt: skip
        for name in names:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
    admin.dispose()
