"""What a run tells its operator in Prefect and on the command line: a run that leaves trading
halted by a failure ends Failed with the cause, logged to the run (alerts included) and in an
artifact; `tradeflow run` exits non-zero with the cause on one line; fatal errors are not
retried; a replay never trades anywhere but on the simulated exchange."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from services import bootstrap

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()


def disagreeing_paper_book(settings) -> None:  # type: ignore[no-untyped-def]
    """The paper exchange holds 5,000 USDT; the ledger will start with 10,000."""
    SimulatedBroker(
        SimulationConfig(starting_cash=Decimal(5000)), bootstrap.paper_book_path(settings)
    )


def flow_run_logs(flow_run_id) -> list[str]:  # type: ignore[no-untyped-def]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)  # logs travel to the API in batches
    with get_client(sync_client=True) as client:
        flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        return [log.message for log in client.read_logs(log_filter=flt)]


def artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return str(max(found, key=lambda a: a.created).data)


def test_reconcile_flow_when_books_disagree_then_failed_with_cause_logged_alerted_and_reported(
    app_settings,  # type: ignore[no-untyped-def]
) -> None:
    from flows.reconcile import reconcile

    disagreeing_paper_book(app_settings())
    state = reconcile(return_state=True)
    assert state.is_failed()
    assert "cash USDT: ledger 10000, broker 5000" in (state.message or "")
    logs = "\n".join(flow_run_logs(state.state_details.flow_run_id))
    assert "unexplained: cash USDT" in logs
    assert "ALERT tradeflow reconciliation FAILED" in logs  # the alert, in the run's own log
    assert "Reconciliation FAILED" in artifact("reconcile")


def test_task_when_the_error_is_fatal_then_it_fails_at_once_without_retries(
    app_settings,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from prefect import flow

    from tasks.decide import load_champion
    from tasks.reconcile import reconcile_with_broker

    @flow
    def probe():  # type: ignore[no-untyped-def]
        return [load_champion(return_state=True), reconcile_with_broker(return_state=True)]

    monkeypatch.setenv(
        "TRADEFLOW_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/nodb_x"
    )
    app_settings.cache_clear()
    started = time.perf_counter()
    no_champion, no_database = probe()
    assert time.perf_counter() - started < 10  # retries would wait 2 + 5 + 15 s
    assert "no 'champion' alias" in (no_champion.message or "")
    assert 'database "nodb_x" does not exist' in (no_database.message or "")
    assert all(s.is_failed() for s in (no_champion, no_database))


def test_run_when_broker_is_not_paper_then_refused_in_one_line_before_anything_runs(
    app_settings,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("TRADEFLOW_BROKER", "dummy")
    app_settings.cache_clear()
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 1
    [error] = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert "simulated exchange only; TRADEFLOW_BROKER=dummy" in error
    assert not Path(app_settings().var_dir, "ledger.db").exists() or not bootstrap.ledger(
        app_settings()
    ).orders.find("paper")


@pytest.mark.slow
def test_run_when_reconciliation_fails_then_exit_1_with_the_cause_on_one_line(
    app_settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from tests.flows.test_pipeline_e2e import write_real_candles

    write_real_candles(tmp_path / "data", 1200)
    monkeypatch.setenv("TRADEFLOW_DATA_DIR", str(tmp_path / "data"))
    app_settings.cache_clear()
    disagreeing_paper_book(app_settings())
    result = runner.invoke(app, ["run", "--replay-candles", "12"])
    assert result.exit_code == 1, result.output
    [error] = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert error.startswith("error: TradingHalted: trading halted: not_reconciled: failed:")
    assert "cash USDT: ledger 10000, broker 5000" in error
