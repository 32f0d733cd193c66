from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.clock import FakeClock
from core.safety.signing import sign
from infra.ledger.ledger import open_ledger
from infra.settings import Settings
from services import bootstrap
from serving.app import MissingSecret, create_app
from serving.deps import get_clock

SECRET = "s3cret-for-tests-0123456789abcdef0123456789"
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
TS = int(NOW.timestamp())
URL = "/api/v1/safety/kill-switch"


def make_client(url: str, clock: FakeClock | None = None) -> TestClient:
    # var_dir holds the paper exchange's book: one per test, never the repository's var/.
    var = Path(tempfile.mkdtemp(prefix="tradeflow-api-"))
    app = create_app(Settings(database_url=url, kill_switch_secret=SECRET, var_dir=var))
    app.dependency_overrides[get_clock] = lambda: clock or FakeClock(NOW)
    return TestClient(app)


@pytest.fixture
def client(ledger_url: str) -> Iterator[TestClient]:
    with make_client(ledger_url) as c:
        yield c


def signed(action: str, ts: int = TS, secret: str = SECRET) -> dict[str, str]:
    return {"X-Kill-Switch-Timestamp": str(ts), "X-Kill-Switch-Signature": sign(secret, action, ts)}


def body(action: str = "activate", reason: str = "ops drill") -> dict[str, str]:
    return {"action": action, "reason": reason}


def events(url: str) -> list[tuple[bool, str | None]]:
    return [(e.accepted, e.rejection) for e in reversed(open_ledger(url).requests.recent(100))]


def test_create_app_when_no_secret_then_refuses_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(MissingSecret, match="TRADEFLOW_KILL_SWITCH_SECRET"):
        create_app(Settings(database_url=f"sqlite:///{tmp_path}/x.db", kill_switch_secret=None))


def test_health_when_ledger_answers_then_200(client: TestClient) -> None:
    r = client.get("/api/v1/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_health_when_ledger_unreachable_then_503_with_reason() -> None:
    with make_client("postgresql+psycopg://postgres@127.0.0.1:1/nowhere") as c:
        r = c.get("/api/v1/health")
    assert r.status_code == 503
    assert r.json()["reason"].startswith("ledger unavailable: LedgerUnavailable")


def test_kill_switch_when_validly_signed_then_active_persisted_and_recorded(
    client: TestClient, ledger_url: str
) -> None:
    r = client.post(URL, json=body(), headers=signed("activate"))
    assert r.status_code == 200
    assert r.json()["active"] is True
    assert client.get("/api/v1/safety/status").json()["kill_switch"]["reason"] == "ops drill"
    with make_client(ledger_url) as restarted:  # state lives in the ledger, not the process
        assert restarted.get("/api/v1/safety/status").json()["kill_switch"]["active"] is True
    assert events(ledger_url) == [(True, None)]


def test_kill_switch_when_deactivated_with_its_own_signature_then_inactive(
    client: TestClient,
) -> None:
    client.post(URL, json=body(), headers=signed("activate"))
    r = client.post(
        URL, json=body("deactivate", "drill over"), headers=signed("deactivate", TS - 1)
    )
    assert r.status_code == 200
    assert r.json()["active"] is False


@pytest.mark.parametrize(
    ("headers", "payload", "status", "rejection"),
    [
        (signed("activate", secret="forged"), body(), 401, "signature does not match"),
        (signed("deactivate"), body("activate"), 401, "signature does not match"),
        (signed("activate", ts=TS - 31), body(), 401, "window 30s"),
        (signed("activate", ts=TS + 31), body(), 401, "window 30s"),
        ({}, body(), 401, "missing header(s): X-Kill-Switch-Timestamp, X-Kill-Switch-Signature"),
        (
            {"X-Kill-Switch-Timestamp": "soon", "X-Kill-Switch-Signature": "ab"},
            body(),
            401,
            "must be unix seconds",
        ),
        (signed("activate"), {"action": "explode", "reason": "x"}, 422, "malformed body: action"),
        (signed("activate"), {"action": "activate"}, 422, "malformed body: reason"),
        (signed("activate"), {"action": "activate", "reason": "x", "extra": 1}, 422, "extra"),
    ],
)
def test_kill_switch_when_request_bad_then_rejected_recorded_and_state_unchanged(
    client: TestClient,
    ledger_url: str,
    headers: dict[str, str],
    payload: dict[str, object],
    status: int,
    rejection: str,
) -> None:
    r = client.post(URL, json=payload, headers=headers)
    assert r.status_code == status
    assert rejection in r.json()["detail"]
    [(accepted, why)] = events(ledger_url)
    assert accepted is False
    assert rejection in (why or "")
    assert client.get("/api/v1/safety/status").json()["kill_switch"]["active"] is False


def test_kill_switch_when_body_not_json_then_422_and_recorded(
    client: TestClient, ledger_url: str
) -> None:
    r = client.post(
        URL, content=b"{nope", headers=signed("activate") | {"Content-Type": "application/json"}
    )
    assert r.status_code == 422
    assert "not JSON" in r.json()["detail"]
    assert events(ledger_url)[0][0] is False


def test_kill_switch_when_signature_replayed_then_401_and_recorded(
    client: TestClient, ledger_url: str
) -> None:
    h = signed("activate")
    assert client.post(URL, json=body(), headers=h).status_code == 200
    r = client.post(URL, json=body(reason="again"), headers=h)
    assert r.status_code == 401
    assert "replay" in r.json()["detail"]
    assert events(ledger_url) == [(True, None), (False, "signature already used (replay)")]
    assert json.dumps(client.get("/api/v1/safety/status").json()).count('"accepted": false') == 1


def test_kill_switch_when_activated_with_open_book_then_answer_reports_cancels_and_closes(
    ledger_url: str,
    ledger,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """Through the API and the shared paper exchange: one signed request halts, cancels every
    open order and closes every position before it answers; status shows each step."""
    from infra.brokers.simulated import SimulatedBroker, SimulationConfig
    from tests.services.open_book import open_book

    settings = Settings(database_url=ledger_url, kill_switch_secret=SECRET, var_dir=tmp_path)
    book_path = bootstrap.paper_book_path(settings)
    book = SimulatedBroker(SimulationConfig(), state_path=book_path)
    open_book(ledger, book, open_orders=4, positions=2)
    app = create_app(settings)
    app.dependency_overrides[get_clock] = lambda: FakeClock(NOW)
    with TestClient(app) as api:
        r = api.post(URL, json=body(), headers=signed("activate"))
        status = api.get("/api/v1/safety/status").json()
    assert r.status_code == 200
    out = r.json()
    assert (out["active"], out["cancelled_orders"], out["closing_orders"]) == (True, 4, 2)
    assert out["failures"] == []
    assert out["seconds"] < 1.0
    assert status["trading_state"] == "halted"
    assert status["halted_by"] == {"control": "kill_switch", "detail": "ops drill"}
    assert [s["step"] for s in status["kill_switch_steps"]] == [
        "halted",
        "orders_cancelled",
        "positions_closing",
        "alerted",
    ]
    reopened = SimulatedBroker(SimulationConfig(), state_path=book_path)
    assert [o.side.value for o in reopened.open_orders()] == ["sell", "sell"]


def test_kill_switch_when_a_client_keeps_failing_then_rate_limited_and_still_recorded(
    client: TestClient, ledger_url: str
) -> None:
    for _ in range(10):
        assert (
            client.post(URL, json=body(), headers=signed("activate", secret="x")).status_code == 401
        )
    r = client.post(URL, json=body(), headers=signed("activate"))  # even a good one, for now
    assert r.status_code == 429
    assert "too many rejected requests" in r.json()["detail"]
    # Ten refusals kept in detail; beyond the budget they are only counted.
    assert len(events(ledger_url)) == 10
    counted = open_ledger(ledger_url).requests.count_refusals(
        "testclient", NOW - timedelta(minutes=1)
    )
    assert counted == 11


def test_breaker_reset_when_signed_then_cleared_and_forged_or_replayed_refused(
    client: TestClient, ledger_url: str
) -> None:
    from core.risk.state import Control

    ledger = open_ledger(ledger_url)
    ledger.safety.set_control(
        Control.CIRCUIT_BREAKER, True, "MAX_DRAWDOWN: 16%", NOW, until=NOW + timedelta(hours=24)
    )
    status = client.get("/api/v1/safety/status").json()
    assert status["trading_state"] == "halted"
    assert status["circuit_breaker"]["tripped"] is True
    url = "/api/v1/safety/circuit-breaker"
    wrong = client.post(url, json={"action": "reset", "reason": "x"}, headers=signed("activate"))
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "signature does not match"
    good = client.post(url, json={"action": "reset", "reason": "reviewed"}, headers=signed("reset"))
    assert good.status_code == 200
    assert good.json()["tripped"] is False
    replay = client.post(url, json={"action": "reset", "reason": "again"}, headers=signed("reset"))
    assert replay.status_code == 401
    assert client.get("/api/v1/safety/status").json()["trading_state"] == "active"
    steps = [e.step for e in ledger.safety.events(Control.CIRCUIT_BREAKER)]
    assert steps == ["activated", "reset_early"]
    bad_action = client.post(
        url, json={"action": "activate", "reason": "x"}, headers=signed("reset")
    )
    assert bad_action.status_code == 422


def test_api_import_when_started_then_no_model_libraries_loaded() -> None:
    """The safety API must start fast: it needs the ledger and the broker, not the models."""
    import subprocess
    import sys

    code = (
        "import sys, serving.app; "
        "print(sorted(m for m in ('mlflow', 'xgboost', 'lightgbm', 'torch', 'talib') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"
