"""prefect.yaml deploys: the real CLI against a temporary Prefect server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def cli(*args: str) -> str:
    from prefect.settings import PREFECT_API_URL

    env = os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "PWD": str(ROOT)}
    out = subprocess.run(
        [PREFECT, "--no-prompt", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_prefect_yaml_when_deployed_then_every_flow_scheduled_on_the_process_pool() -> None:
    from prefect.client.orchestration import get_client

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    pool = spec["deployments"][0]["work_pool"]["name"]
    cli("work-pool", "create", pool, "--type", "process")
    cli("deploy", "--all")

    with get_client(sync_client=True) as client:
        deployed = {d.name: d for d in client.read_deployments()}
        for item in spec["deployments"]:
            d = deployed[item["name"]]
            assert d.entrypoint == item["entrypoint"]
            assert d.work_pool_name == pool
            assert [s.schedule.cron for s in d.schedules] == [item["schedules"][0]["cron"]]
            assert d.parameters == item["parameters"]
            flow = client.read_flow(d.flow_id)
            assert flow.name == item["entrypoint"].split(":")[1]
    assert {"trade-hourly", "train-daily", "reconcile-quarter-hourly"} <= set(deployed)


def test_flows_when_deployed_then_no_parameter_is_a_callable() -> None:
    """A callable parameter (a progress hook) would show in the deployment's form."""
    import inspect

    from flows.decide import decide
    from flows.pipeline import pipeline
    from flows.reconcile import reconcile
    from flows.replay import replay
    from flows.trade import trade
    from flows.train import train

    for flow in (decide, pipeline, reconcile, replay, trade, train):
        for p in inspect.signature(flow.fn).parameters.values():
            assert "Callable" not in str(p.annotation), (flow.name, p.name)
