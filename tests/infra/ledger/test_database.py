"""SQLite engines: a new ledger file gets 16 KiB pages; a file made before keeps its own; a
bulk writer's engine syncs less than a durable one (its checkpoints:
tests/infra/ledger/test_checkpoints.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import text

from infra.ledger.database import make_engine


def _pragma(url: str, name: str, durable: bool = True) -> int:
    engine = make_engine(url, durable=durable)
    try:
        with engine.connect() as c:
            return int(c.execute(text(f"PRAGMA {name}")).scalar_one())
    finally:
        engine.dispose()


def test_make_engine_when_the_file_is_new_then_its_pages_are_16_kib(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert _pragma(url, "page_size") == 16_384
    engine = make_engine(url)
    try:
        with engine.connect() as c:  # set after the page size, which WAL would have fixed
            assert c.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
    finally:
        engine.dispose()


def test_make_engine_when_the_file_exists_then_it_keeps_its_page_size(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # made with SQLite's default pages, holding a table
        old.execute("CREATE TABLE t (x INTEGER)")
    assert _pragma(f"sqlite:///{path}", "page_size") == 4_096


def test_make_engine_when_not_durable_then_commits_are_not_synced(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bulk.db'}"
    assert _pragma(url, "synchronous", durable=False) == 1  # NORMAL
    assert _pragma(url, "synchronous") == 2  # FULL
    assert _pragma(url, "wal_autocheckpoint") == 1_000  # SQLite's default
