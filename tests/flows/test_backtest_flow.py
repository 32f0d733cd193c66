"""The backtest flow on real candles, as a user runs it after training: a report with its
sections, the run in the ledger under its own account (nothing under the paper account), the
report beside the model version in MLflow, a Prefect artifact, and a retried run stored once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from infra.reports.backtest_html import SECTIONS
from services import bootstrap
from tests.flows.test_pipeline_e2e import write_real_candles

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

ROWS = 1500
WINDOW = 200  # candles backtested, after everything the model was trained on


@pytest.fixture
def trained(app_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TRADEFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TRADEFLOW_CONSENSUS_THRESHOLD", "0.02")  # a short window that trades
    monkeypatch.setenv("TRADEFLOW_LABEL_COST", "0")
    monkeypatch.setenv("TRADEFLOW_MODEL_MEMBERS", "xgboost,lightgbm")
    # A short window rarely proves an edge: trade on it anyway, so orders exist to check.
    monkeypatch.setenv("TRADEFLOW_POLICY_REQUIRE_SIGNIFICANCE", "false")
    write_real_candles(tmp_path / "data", ROWS)
    app_settings.cache_clear()
    settings = app_settings()
    from flows.ingest import ingest
    from flows.train import train

    ingest()
    last = bootstrap.ledger(settings).candles.last_time("binance", "BTC/USDT", "1h")
    assert last is not None
    start = last - timedelta(hours=WINDOW - 1)
    train(until=start - timedelta(hours=1))
    return settings, start, last + timedelta(hours=1)


def test_backtest_flow_when_run_after_training_then_report_ledger_mlflow_and_artifact(
    trained,  # type: ignore[no-untyped-def]
) -> None:
    from flows.backtest import backtest

    settings, start, end = trained
    outcome = backtest(start, end, run_id="test-run-1")
    run, result = outcome.run, outcome.result
    assert result is not None
    assert run.account == "bt-test-run-1" != settings.account

    html = Path(str(run.report_path)).read_text()
    assert all(f'id="{section}"' in html for section in SECTIONS)

    ledger = bootstrap.ledger(settings)
    assert ledger.backtests.get("test-run-1") == run
    decisions = ledger.orders.decisions(run.account)
    assert len(decisions) == WINDOW * len(settings.symbols)
    assert {d.candle_time for d in decisions} == set(pd.date_range(start, end, freq="1h")[:-1])
    assert len(ledger.fills.history(run.account)) == result.decisions.fills > 0
    assert ledger.orders.decisions(settings.account) == []  # paper rows untouched
    assert run.cash == result.stats.run.final_equity - _held(ledger, run.account, result)
    bootstrap.forget()  # a new process: the ledger still belongs to the paper account alone
    assert bootstrap.ledger(settings).accounts.names() == [settings.account]

    client = MlflowClient(settings.tracking_uri)
    version = client.get_model_version(settings.model_name, run.model_version)
    stored = [a.path for a in client.list_artifacts(version.run_id, "backtests/test-run-1")]
    assert stored == ["backtests/test-run-1/report.html"]
    assert "backtest.test-run-1" in version.tags

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts()
    assert any(a.key == "backtest" and "test-run-1" in str(a.data) for a in artifacts)

    again = backtest(start, end, run_id="test-run-1")  # a retry of the same run
    assert again.result is None
    assert again.run == run
    assert len(ledger.orders.decisions(run.account)) == len(decisions)


def _held(ledger, account: str, result) -> Decimal:  # type: ignore[no-untyped-def]
    last = {s: Decimal(repr(float(c.iloc[-1]))) for s, c in result.closes.items()}
    return sum(
        (p.quantity * last[s] for s, p in ledger.fills.positions(account).items()), Decimal(0)
    )
