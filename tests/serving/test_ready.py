"""GET /api/v1/ready: 200 only when the ledger answers, reconciliation is not pending and the
model has a champion in a real MLflow store; else 503 naming each check that is not ok."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.risk.state import Control
from infra.ledger.ledger import open_ledger
from registry.model_cache import ModelCache
from registry.model_catalog import MlflowCatalog
from tests.registry.test_model_cache import Store
from tests.serving.conftest import NOW
from tests.serving.test_ml_routes import make_client

READY = "/api/v1/ready"


@pytest.fixture
def client(ledger_url: str, store: Store) -> Iterator[TestClient]:
    with make_client(ledger_url, store.cache(alias_ttl_s=0), MlflowCatalog(store.uri)) as c:
        yield c


def answer(client: TestClient) -> tuple[int, dict[str, Any]]:
    r = client.get(READY)
    return r.status_code, r.json()


def test_ready_when_champion_and_ledger_ok_then_200(client: TestClient, champion: str) -> None:
    assert answer(client) == (
        200,
        {"status": "ready", "checks": {"ledger": "ok", "reconciliation": "ok", "model": "ok"}},
    )


def test_ready_when_no_champion_yet_then_503_naming_the_model(
    client: TestClient, store: Store
) -> None:
    store.move("challenger", store.register())
    status, body = answer(client)
    assert status == 503
    assert body["checks"] == {"ledger": "ok", "reconciliation": "ok", "model": "no_champion"}
    assert client.get("/api/v1/health").status_code == 200  # alive, just not ready


def test_ready_when_reconciliation_pending_then_503(
    client: TestClient, champion: str, ledger_url: str
) -> None:
    open_ledger(ledger_url).safety.set_control(
        Control.RECONCILIATION, True, "not reconciled since start", NOW, event="pending"
    )
    status, body = answer(client)
    assert status == 503
    assert body["checks"]["reconciliation"] == "reconciliation_pending"


def test_ready_when_registry_and_ledger_down_then_503_with_both_reasons(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    dead = "http://127.0.0.1:1"
    ledger = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    with make_client(ledger, ModelCache("fs", tracking_uri=dead), MlflowCatalog(dead)) as c:
        status, body = answer(c)
    assert status == 503
    assert body["checks"] == {
        "ledger": "ledger_unavailable",
        "reconciliation": "unknown",
        "model": "registry_unavailable",
    }
