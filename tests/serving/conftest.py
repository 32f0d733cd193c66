"""The API under test: a real app over a real ledger (SQLite and PostgreSQL), a fixed clock."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.clock import FakeClock
from core.safety.signing import sign
from infra.ledger.ledger import open_ledger
from infra.settings import Settings
from serving.app import create_app

SECRET = "s3cret-for-tests-0123456789abcdef0123456789"
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
TS = int(NOW.timestamp())
URL = "/api/v1/safety/kill-switch"
BREAKER = "/api/v1/safety/circuit-breaker"


def make_client(
    url: str,
    clock: FakeClock | None = None,
    peer: tuple[str, int] = ("testclient", 50000),
    **settings: object,
) -> TestClient:
    # var_dir holds the paper exchange's book: one per test, never the repository's var/.
    var = Path(tempfile.mkdtemp(prefix="tradeflow-api-"))
    app = create_app(
        Settings(database_url=url, kill_switch_secret=SECRET, var_dir=var, **settings),
        clock=clock or FakeClock(NOW),
    )
    return TestClient(app, client=peer)


@pytest.fixture(scope="module")
def candle_ledger(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The real candles the served model was trained on, stored once in a SQLite ledger."""
    from tests.registry.test_model_cache import trained_store  # trains once, on first use

    url = f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.db'}"
    ledger = open_ledger(url)
    for symbol, frame in trained_store().candles.items():
        ledger.candles.upsert("binance", symbol, "1h", frame)
    return url


@pytest.fixture
def client(ledger_url: str) -> Iterator[TestClient]:
    with make_client(ledger_url) as c:
        yield c


def signed(action: str, ts: int = TS, secret: str = SECRET) -> dict[str, str]:
    return {"X-Kill-Switch-Timestamp": str(ts), "X-Kill-Switch-Signature": sign(secret, action, ts)}


def body(action: str = "activate", reason: str = "ops drill") -> dict[str, str]:
    return {"action": action, "reason": reason}


def events(url: str) -> list[tuple[bool, str | None]]:
    """Recorded requests, oldest first: (accepted, why refused)."""
    return [(e.accepted, e.rejection) for e in reversed(open_ledger(url).requests.recent(10_000))]


def refusals(url: str, client: str | None = "testclient") -> int:
    from datetime import timedelta

    return open_ledger(url).requests.count_refusals(client, NOW - timedelta(minutes=1))
