"""Read answers kept while nothing has changed (serving/page_cache.py), on the real app.

On PostgreSQL the app counts the outbox's notifications: a change that writes no event (made
here behind the stores' back) is not seen while the answer is kept, which proves no read
happened; any committed event, any writing request to this process, or the answer's age ends
it. On SQLite the file's data version moves on with any commit, events or not: a change behind
the stores is seen at once, and a kept answer is given while nothing commits."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from core.events import EventKind
from core.risk.state import Control
from infra.ledger.database import engine_for
from infra.ledger.events import append
from infra.ledger.ledger import open_ledger
from tests.conftest import _postgres_schema_url
from tests.serving.conftest import make_client

HEALTH, STATUS = "/api/v1/health", "/api/v1/safety/status"
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _postgres_schema_url()


def _halted_behind_the_stores(url: str) -> None:
    """The kill switch set straight in the table: no event, no notification."""
    with engine_for(url).begin() as c:
        c.execute(
            text(
                "INSERT INTO safety_state (control, active, reason, changed_at) "
                "VALUES (:c, :a, 'behind', :t) ON CONFLICT (control) "
                "DO UPDATE SET active = :a, reason = 'behind'"
            ),
            {"c": Control.KILL_SWITCH.value, "a": True, "t": NOW},
        )


def _an_event(url: str) -> None:
    with open_ledger(url)._sessions.write() as s:
        append(s, EventKind.ORDER_UPDATED, {"client_order_id": "x"}, NOW)


def _halted(client: TestClient, path: str) -> bool:
    answer = client.get(path)
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["kill_switch"]["active"])


def _eventually(check: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def pg_client(pg_url: str) -> Iterator[TestClient]:
    open_ledger(pg_url)
    with make_client(pg_url) as client:
        news = client.app.state.api.news  # type: ignore[attr-defined]
        assert _eventually(lambda: news.generation is not None), "the outbox watch never listened"
        yield client


@pytest.mark.parametrize("path", [HEALTH, STATUS])
def test_read_when_nothing_committed_then_the_kept_answer_without_a_read(
    pg_url: str, pg_client: TestClient, path: str
) -> None:
    assert not _halted(pg_client, path)
    _halted_behind_the_stores(pg_url)
    assert not _halted(pg_client, path)  # kept: the change behind the stores was not read


@pytest.mark.parametrize("path", [HEALTH, STATUS])
def test_read_when_an_event_commits_elsewhere_then_read_again_once_notified(
    pg_url: str, pg_client: TestClient, path: str
) -> None:
    assert not _halted(pg_client, path)
    _halted_behind_the_stores(pg_url)
    _an_event(pg_url)  # as a flow worker's write would: its NOTIFY reaches the app
    assert _eventually(lambda: _halted(pg_client, path))


def test_read_when_this_process_took_a_writing_request_then_read_again_at_once(
    pg_url: str, pg_client: TestClient
) -> None:
    assert not _halted(pg_client, STATUS)
    _halted_behind_the_stores(pg_url)
    refused = pg_client.post("/api/v1/safety/kill-switch", json={})
    assert refused.status_code == 422  # the empty body is refused (and counted)
    assert _halted(pg_client, STATUS)  # no notification needed: the request counted as news


def test_read_when_the_kept_answer_is_a_second_old_then_read_again(
    pg_url: str, pg_client: TestClient
) -> None:
    assert not _halted(pg_client, HEALTH)
    _halted_behind_the_stores(pg_url)
    time.sleep(1.05)  # PageCache's max_age_s
    assert _halted(pg_client, HEALTH)


@pytest.mark.parametrize("path", [HEALTH, STATUS])
def test_read_when_sqlite_and_anything_commits_then_read_again_at_once(
    tmp_path: Path, path: str
) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    open_ledger(url)
    with make_client(url) as client:
        assert not _halted(client, path)
        _halted_behind_the_stores(url)  # no event: the file's data version still moves on
        assert _halted(client, path)


def test_read_when_sqlite_and_nothing_commits_then_the_kept_answer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    open_ledger(url)
    with make_client(url) as client:
        first = client.get(HEALTH).content
        kept = client.app.state.page_cache  # type: ignore[attr-defined]
        assert kept.get("health", client.app.state.api.news_version()) == first  # type: ignore[attr-defined]
        assert client.get(HEALTH).content == first


def test_kill_switch_when_refused_then_nobody_waits_and_when_applied_then_news_at_once(
    pg_url: str, pg_client: TestClient
) -> None:
    from tests.serving.conftest import TS, URL, body, signed

    api = pg_client.app.state.api  # type: ignore[attr-defined]
    refused = pg_client.post(URL, json=body(), headers=signed("activate", secret="wrong" * 8))
    assert refused.status_code == 401
    assert api.first._opened is None  # a refused request never held the door
    assert not _halted(pg_client, STATUS)
    applied = pg_client.post(URL, json=body(), headers=signed("activate", TS))
    assert applied.status_code == 200, applied.text
    assert _halted(pg_client, STATUS)  # this process's own write: no wait for its NOTIFY
