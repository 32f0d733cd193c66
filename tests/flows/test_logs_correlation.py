"""End to end, with every secret setting configured: the real `decide` flow (a trained champion
in MLflow, real candles, the paper broker, its stale-candle alert) and the real API (a signed
kill switch with an X-Correlation-ID, a bearer token that is refused). Each decision's id is
in the process's JSON lines and in the Prefect run's logs; the request's id is in the API's
lines; no secret value appears in stdout, stderr, the log records or the Prefect logs, though
a flow here logs every one of them on purpose."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient

from core.safety.signing import sign
from infra.logging import configure_logging, reset_logging
from services import bootstrap
from serving.app import create_app
from tests.registry.test_model_cache import CANDLES, NAME, new_store

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

KILL = "kill-" + secrets.token_hex(24)
API_KEY = "exchange-key-" + secrets.token_hex(8)
API_SECRET = "exchange-secret-" + secrets.token_hex(16)
LLM_KEY = "sk-" + secrets.token_hex(16)
ALERT_PASSWORD = "alert-pw-" + secrets.token_hex(6)
ALERT_TOKEN = "hook-" + secrets.token_hex(10)
BEARER = f"tf_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)[:43]}"
SECRETS = (KILL, API_KEY, API_SECRET, LLM_KEY, ALERT_PASSWORD, ALERT_TOKEN, BEARER)
REQUEST_ID = "e2e-kill-switch/1"


@pytest.fixture
def settings(app_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, btc_1h, eth_1h):  # type: ignore[no-untyped-def]
    """Every secret setting set; a champion trained on the real candles the ledger holds."""
    store = new_store(tmp_path)
    store.move("champion", store.register())
    env = {
        "KILL_SWITCH_SECRET": KILL,
        "EXCHANGE_API_KEY": API_KEY,
        "EXCHANGE_API_SECRET": API_SECRET,
        "LLM_API_KEY": LLM_KEY,
        # Port 9 (discard): nothing listens, so the alert's delivery fails and is logged.
        "ALERT_URLS": f"json://alerter:{ALERT_PASSWORD}@127.0.0.1:9/{ALERT_TOKEN}",
        "MLFLOW_TRACKING_URI": store.uri,
        "MODEL_NAME": NAME,
    }
    for key, value in env.items():
        monkeypatch.setenv(f"TRADEFLOW_{key}", value)
    app_settings.cache_clear()
    bootstrap.forget()
    settings = app_settings()
    ledger = bootstrap.ledger(settings)
    for symbol, frame in (("BTC/USDT", btc_1h), ("ETH/USDT", eth_1h)):
        ledger.candles.upsert("binance", symbol, "1h", frame.head(CANDLES))
    return settings


@pytest.fixture
def json_logs(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    configure_logging(settings)  # to sys.stderr, which capfd reads
    try:
        yield
    finally:
        reset_logging()


def prefect_logs(flow_run_id: Any) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)  # logs travel to the API in batches
    with get_client(sync_client=True) as client:
        flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        return "\n".join(log.message for log in client.read_logs(log_filter=flt))


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def leak_every_secret(alert_url: str) -> None:
    """What a careless log call could do, in a flow run: every secret, every way."""
    log = logging.getLogger("tradeflow.leaky")
    log.warning("settings %s", [API_KEY, API_SECRET, LLM_KEY, KILL])
    log.warning("calling with Authorization: Bearer %s", BEARER)
    structlog.get_logger("tradeflow.leaky").warning("alerting", url=alert_url)


def call_api(settings) -> None:  # type: ignore[no-untyped-def]
    """A signed kill switch under our own correlation id, then a refused bearer token."""
    with TestClient(create_app(settings)) as api:
        ts = int(api.app.state.api.clock.now().timestamp())
        killed = api.post(
            "/api/v1/safety/kill-switch",
            json={"action": "activate", "reason": "e2e drill"},
            headers={
                "X-Kill-Switch-Timestamp": str(ts),
                "X-Kill-Switch-Signature": sign(KILL, "activate", ts),
                "X-Correlation-ID": REQUEST_ID,
            },
        )
        api.get("/api/v1/safety/status", headers={"Authorization": f"Bearer {BEARER}"})
    assert killed.status_code == 200
    assert killed.headers["X-Correlation-ID"] == REQUEST_ID


def test_logs_when_decisions_run_and_api_called_then_ids_followed_and_no_secret_anywhere(
    settings,  # type: ignore[no-untyped-def]
    json_logs: None,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from prefect import flow

    from flows.decide import decide

    decided = decide(return_state=True)
    leaked = flow(name="leaky")(leak_every_secret)(settings.alert_urls[0], return_state=True)
    call_api(settings)
    assert decided.is_completed(), decided.message

    ids = {d.decision_id for d in bootstrap.ledger(settings).orders.decisions(settings.account)}
    assert len(ids) == settings.catch_up_candles * len(settings.symbols)
    out, err = capfd.readouterr()
    lines = json_lines(err)
    # The process's lines: one per decision under its id; the API's alert under the request's.
    decision_lines = [line for line in lines if line["event"].startswith("decided ")]
    assert {line["correlation_id"] for line in decision_lines} == ids
    kill_alerts = [line for line in lines if "kill switch" in line["event"].lower()]
    assert kill_alerts
    assert {line.get("correlation_id") for line in kill_alerts} == {REQUEST_ID}
    # The Prefect run's logs: each decision's line ends with its id; the alert is there too.
    run_logs = prefect_logs(decided.state_details.flow_run_id)
    for decision_id in ids:
        assert f"correlation_id={decision_id}" in run_logs
    assert "ALERT" in run_logs
    leaky_logs = prefect_logs(leaked.state_details.flow_run_id)
    assert leaky_logs.count("***") >= 6  # the leaks were made, and cleaned on the way

    everywhere = "\n".join([out, err, caplog.text, run_logs, leaky_logs])
    for secret in SECRETS:
        assert secret not in everywhere, f"a secret was logged: {secret[:6]}…"
