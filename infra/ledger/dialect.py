"""Dialect-specific statements the ledger needs on both SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_for(session: Session):  # type: ignore[no-untyped-def]
    """The dialect's INSERT, which knows ON CONFLICT DO NOTHING and RETURNING."""
    return postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
