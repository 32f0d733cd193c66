"""The news watches. On a real PostgreSQL the outbox watch's generation moves on with every
committed event, not with one rolled back, and is unknown (None) while its LISTEN connection is
down, coming back higher after a reconnect. On SQLite the file watch's moves on with any commit
by another connection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from core.events import EventKind
from infra.ledger.database import engine_for
from infra.ledger.events import append
from infra.ledger.ledger import open_ledger
from infra.ledger.listen import FileWatch, OutboxWatch, watch_for
from tests.conftest import _postgres_schema_url

NOW = datetime(2026, 11, 30, 9, tzinfo=UTC)


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _postgres_schema_url()


def _commit_event(url: str) -> None:
    ledger = open_ledger(url)
    with ledger._sessions.write() as s:
        append(s, EventKind.KILL_SWITCH, {"active": True}, NOW)


def _roll_back_event(url: str) -> None:
    def write_then_fail() -> None:
        with open_ledger(url)._sessions.write() as s:
            append(s, EventKind.KILL_SWITCH, {"active": True}, NOW)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        write_then_fail()


async def _until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition never met"
        await asyncio.sleep(0.01)


def _watching(url: str, body: Callable[[OutboxWatch], Awaitable[None]]) -> None:
    async def main() -> None:
        watch = OutboxWatch(url, retry_s=0.05, max_retry_s=0.2)
        assert watch.generation is None  # not listening yet: nothing is known
        task = asyncio.create_task(watch.run())
        try:
            await _until(lambda: watch.generation is not None)
            await body(watch)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert watch.generation is None

    open_ledger(url)  # migrated: the outbox exists before anything is written to it
    asyncio.run(main())


def test_generation_when_an_event_commits_then_it_moves_on(pg_url: str) -> None:
    async def body(watch: OutboxWatch) -> None:
        before = watch.generation
        assert before is not None
        await asyncio.to_thread(_commit_event, pg_url)
        await _until(lambda: (watch.generation or 0) > before)

    _watching(pg_url, body)


def test_generation_when_an_event_rolls_back_then_it_stays(pg_url: str) -> None:
    async def body(watch: OutboxWatch) -> None:
        before = watch.generation
        await asyncio.to_thread(_roll_back_event, pg_url)
        await asyncio.sleep(0.3)  # a notification would have come by now
        assert watch.generation == before

    _watching(pg_url, body)


def test_generation_when_touched_then_it_moves_on_at_once(pg_url: str) -> None:
    async def body(watch: OutboxWatch) -> None:
        before = watch.generation
        assert before is not None
        watch.touch()
        assert watch.generation == before + 1

    _watching(pg_url, body)


def test_generation_when_its_connection_is_cut_then_unknown_and_back_higher(pg_url: str) -> None:
    def cut() -> None:
        with engine_for(pg_url).begin() as c:
            c.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN tradeflow_events%' AND pid <> pg_backend_pid()"
                )
            )

    async def body(watch: OutboxWatch) -> None:
        before = watch.generation
        assert before is not None
        seen_down = False

        def down_then_back() -> bool:
            nonlocal seen_down
            seen_down = seen_down or watch.generation is None
            return seen_down and (watch.generation or 0) > before

        await asyncio.to_thread(cut)
        await _until(down_then_back)

    _watching(pg_url, body)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    open_ledger(url)
    return url


@pytest.fixture
def file_watch(sqlite_url: str) -> FileWatch:
    watch = watch_for(sqlite_url)
    assert isinstance(watch, FileWatch)
    return watch


def test_file_watch_when_another_connection_commits_then_the_generation_moves_on(
    sqlite_url: str, file_watch: FileWatch
) -> None:
    url, watch = sqlite_url, file_watch
    before = watch.generation
    assert before is not None
    assert watch.generation == before  # nothing committed: the same
    _commit_event(url)
    after = watch.generation
    assert after is not None
    assert after > before
    watch.touch()
    assert watch.generation == after + 1


def test_file_watch_when_the_file_does_not_exist_yet_then_unknown_and_not_created(
    tmp_path: Path,
) -> None:
    path = tmp_path / "later.db"
    watch = watch_for(f"sqlite:///{path}")
    assert watch is not None
    assert watch.generation is None
    assert not path.exists()
    open_ledger(f"sqlite:///{path}")
    assert watch.generation is not None


def test_watch_for_when_in_memory_sqlite_then_none_and_postgresql_then_the_outbox_watch() -> None:
    assert watch_for("sqlite://") is None
    assert watch_for("sqlite:///:memory:") is None
    assert isinstance(watch_for("postgresql+psycopg://u@127.0.0.1:5432/db"), OutboxWatch)


def test_file_watch_when_its_connection_is_opened_again_then_the_generation_moves_on(
    file_watch: FileWatch,
) -> None:
    watch = file_watch
    before = watch.generation
    assert before is not None
    watch._close()  # as after an error: the new connection's versions are not comparable
    assert watch.generation == before + 1


def test_generation_when_quiet_then_pinged_and_still_live(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import infra.ledger.listen as listen

    monkeypatch.setattr(listen, "PING_EVERY_S", 0.05)

    async def body(watch: OutboxWatch) -> None:
        before = watch.generation
        assert before is not None
        await _until(lambda: (watch.generation or 0) >= before + 2)  # two pings answered

    _watching(pg_url, body)
