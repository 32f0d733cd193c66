"""The walk-forward flow on real candles, its folds mapped over a local Dask cluster of two
worker processes: one result per fold (trained before it, tested on it from the same cash),
the chained return, the HTML report and the Prefect artifact, and nothing in the ledger."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from services import bootstrap
from tests.flows.test_pipeline_e2e import write_real_candles

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

ROWS = 1900  # 2024-01-01 .. 2024-03-20 of 1h candles
START = datetime(2024, 3, 14, tzinfo=UTC)
EVERY = timedelta(days=2)


@pytest.fixture
def env(app_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TRADEFLOW_DATA_DIR", str(tmp_path / "data"))  # read from the files
    monkeypatch.setenv("TRADEFLOW_CONSENSUS_THRESHOLD", "0.02")  # short windows that trade
    monkeypatch.setenv("TRADEFLOW_LABEL_COST", "0")
    monkeypatch.setenv("TRADEFLOW_MODEL_MEMBERS", "xgboost,lightgbm")
    # A short window rarely proves an edge: trade on it anyway, so orders exist to check.
    monkeypatch.setenv("TRADEFLOW_POLICY_REQUIRE_SIGNIFICANCE", "false")
    write_real_candles(tmp_path / "data", ROWS)
    app_settings.cache_clear()
    return app_settings()


def test_walk_forward_flow_when_two_folds_on_two_dask_workers_then_per_fold_table_and_chain(
    env,  # type: ignore[no-untyped-def]
) -> None:
    from flows.walk_forward import dask_runner, walk_forward

    # Act
    runner = dask_runner(workers=2)
    report = walk_forward.with_options(task_runner=runner)(
        START, START + 2 * EVERY, EVERY, timedelta(days=60), timeframe="1h", run_id="wf-test"
    )

    # Assert: each fold trained strictly before it and tested on it alone
    summary = report.summary
    assert [r.fold.number for r in summary.folds] == [1, 2]
    assert [(r.fold.test_start, r.fold.test_end) for r in summary.folds] == [
        (START, START + EVERY),
        (START + EVERY, START + 2 * EVERY),
    ]
    horizon = env.label_horizon * timedelta(hours=1)
    for r in summary.folds:
        assert r.fold.train_start == r.fold.test_start - timedelta(days=60)
        assert r.fold.train_start <= r.train_first  # later where the warm-up is not stored
        assert r.train_last + horizon < r.fold.test_start
        assert r.starting_cash == env.starting_cash == Decimal(10000)
        assert len(r.equity) == 48
        assert r.run_id == f"wf-test-f{r.fold.number}"
        assert r.peak_memory_mb is not None
        assert r.peak_memory_mb > 50
    workers = {r.worker for r in summary.folds}
    assert len(workers) == 2  # one fold on each worker process, neither in this one
    assert all(not str(w).endswith(f":{os.getpid()}") for w in workers)
    assert sum(r.trades for r in summary.folds) > 0
    assert math.isclose(
        summary.chained_return, math.prod(1 + r.total_return for r in summary.folds) - 1
    )

    html = report.report_path.read_text()
    assert report.report_path == env.var_dir / "walk-forward" / "wf-test" / "report.html"
    assert 'id="folds"' in html
    assert f"{summary.chained_return:+.2%}" in html

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts()
    assert any(a.key == "walk-forward" and "wf-test" in str(a.data) for a in artifacts)
    ledger = bootstrap.ledger(env)
    assert ledger.accounts.names() == [env.account]  # no fold wrote to the SQL ledger
