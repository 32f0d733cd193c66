"""The API's normal life: health, status, a signed kill switch and breaker reset, through the
real app over the real ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.clock import FakeClock
from core.risk.state import Control
from infra.ledger.ledger import open_ledger
from infra.settings import Settings
from services import bootstrap
from services.bootstrap import MissingSecret
from serving.app import create_app
from tests.serving.conftest import (
    BREAKER,
    NOW,
    SECRET,
    TS,
    URL,
    body,
    events,
    make_client,
    refusals,
    signed,
)


def test_create_app_when_no_secret_then_refuses_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(MissingSecret, match="TRADEFLOW_KILL_SWITCH_SECRET"):
        create_app(Settings(database_url=f"sqlite:///{tmp_path}/x.db", kill_switch_secret=None))


def test_health_when_ledger_answers_then_state_kill_switch_and_model_in_use(
    client: TestClient, ledger_url: str
) -> None:
    from tests.services.open_book import record_order

    r = client.get("/api/v1/health")
    assert r.status_code == 200
    assert r.json() | {"model": None} == {
        "status": "ok",
        "ledger": "ok",
        "trading_state": "active",
        "halted_by": None,
        "kill_switch": {"active": False, "reason": None},
        "model": None,
    }
    record_order(open_ledger(ledger_url), "BTC/USDT", 1)  # a decision made with model m v1
    assert client.get("/api/v1/health").json()["model"]["version"] == "1"


def test_health_when_ledger_unreachable_then_503_with_a_reason_code_only() -> None:
    with make_client("postgresql+psycopg://postgres@127.0.0.1:1/nowhere") as c:
        r = c.get("/api/v1/health")
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "reason": "ledger_unavailable"}


def test_health_when_database_does_not_exist_then_503_misconfigured() -> None:
    with make_client("postgresql+psycopg://postgres@127.0.0.1:5432/no_such_db_x") as c:
        r = c.get("/api/v1/health")
    assert r.json() == {"status": "unavailable", "reason": "ledger_misconfigured"}


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
        (signed("activate", secret="forged" * 8), body(), 401, "signature does not match"),
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
        (signed("activate"), {"action": "explode", "reason": "x"}, 422, "action must be one of"),
        (signed("activate"), {"action": "activate"}, 422, "expected exactly action and reason"),
        (signed("activate"), {"action": "activate", "reason": "x", "extra": 1}, 422, "extra"),
    ],
)
def test_kill_switch_when_request_bad_then_refused_recorded_and_state_unchanged(
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


def test_kill_switch_when_signature_replayed_then_401_recorded_and_status_counts_it(
    client: TestClient, ledger_url: str
) -> None:
    h = signed("activate")
    assert client.post(URL, json=body(), headers=h).status_code == 200
    r = client.post(URL, json=body(reason="again"), headers=h)
    assert r.status_code == 401
    assert "replay" in r.json()["detail"]
    assert events(ledger_url) == [(True, None), (False, "signature already used (replay)")]
    status = client.get("/api/v1/safety/status").json()
    assert [a["reason"] for a in status["accepted_requests"]] == ["ops drill"]
    assert status["refused_requests"] == {"last_minute": 1, "last_hour": 1, "last_day": 1}


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
    app = create_app(settings, clock=FakeClock(NOW))
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


def test_kill_switch_when_a_client_keeps_failing_then_429_but_a_valid_request_still_works(
    client: TestClient, ledger_url: str
) -> None:
    for _ in range(10):
        forged = signed("activate", secret="x" * 32)
        assert client.post(URL, json=body(), headers=forged).status_code == 401
    r = client.post(URL, json=body(), headers=signed("activate", secret="y" * 32))
    assert r.status_code == 429
    assert "too many refused requests" in r.json()["detail"]
    # Ten refusals kept in detail; beyond the budget they are only counted.
    assert len(events(ledger_url)) == 10
    assert refusals(ledger_url) == 11
    assert client.post(URL, json=body(), headers=signed("activate")).status_code == 200


def test_breaker_reset_when_signed_then_cleared_and_forged_or_replayed_refused(
    client: TestClient, ledger_url: str
) -> None:
    ledger = open_ledger(ledger_url)
    ledger.safety.set_control(
        Control.CIRCUIT_BREAKER, True, "MAX_DRAWDOWN: 16%", NOW, until=NOW + timedelta(hours=24)
    )
    status = client.get("/api/v1/safety/status").json()
    assert status["trading_state"] == "halted"
    assert status["circuit_breaker"]["tripped"] is True
    reset = {"action": "reset", "reason": "reviewed"}
    wrong = client.post(BREAKER, json=reset, headers=signed("activate"))
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "signature does not match"
    good = client.post(BREAKER, json=reset, headers=signed("reset"))
    assert good.status_code == 200
    assert good.json()["tripped"] is False
    replay = client.post(BREAKER, json=reset | {"reason": "again"}, headers=signed("reset"))
    assert replay.status_code == 401
    assert client.get("/api/v1/safety/status").json()["trading_state"] == "active"
    steps = [e.step for e in ledger.safety.events(Control.CIRCUIT_BREAKER)]
    assert steps == ["activated", "reset_early"]
    bad_action = client.post(BREAKER, json={"action": "activate", "reason": "x"},
                             headers=signed("reset"))  # fmt: skip
    assert bad_action.status_code == 422


def test_status_when_read_then_one_database_connection_checkout(
    client: TestClient, ledger_url: str
) -> None:
    from sqlalchemy import event

    from infra.ledger.database import engine_for

    checkouts: list[object] = []

    def count(*args: object) -> None:
        checkouts.append(args)

    engine = engine_for(ledger_url)
    event.listen(engine, "checkout", count)
    try:
        assert client.get("/api/v1/safety/status").status_code == 200
    finally:
        event.remove(engine, "checkout", count)
    assert len(checkouts) == 1


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


def test_kill_switch_when_ledger_unreachable_then_503_with_a_code_never_a_500() -> None:
    with make_client("postgresql+psycopg://postgres@127.0.0.1:1/nowhere") as c:
        r = c.post(URL, json=body(), headers=signed("activate"))
        status = c.get("/api/v1/safety/status")
    down = {"status": "unavailable", "reason": "ledger_unavailable"}
    assert (r.status_code, r.json()) == (503, down)
    assert (status.status_code, status.json()) == (503, down)


def test_lifespan_when_running_then_short_gil_turns_and_start_up_frozen_put_back_after(
    ledger_url: str,
) -> None:
    import gc
    import sys

    from serving.priority import GIL_TURN_S

    before = sys.getswitchinterval()
    with make_client(ledger_url):
        assert sys.getswitchinterval() == pytest.approx(GIL_TURN_S)
        assert gc.get_freeze_count() > 0
    assert sys.getswitchinterval() == before
    assert gc.get_freeze_count() == 0
