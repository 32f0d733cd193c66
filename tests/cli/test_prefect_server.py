"""The Prefect server `tradeflow run` owns: a run killed with SIGKILL leaves a server and runs
"Running"; the next start stops that server and marks those runs Crashed. Real processes and
real Prefect servers, each `tradeflow run` stand-in in its own interpreter (as the CLI is)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from filelock import FileLock

from cli.prefect_server import (
    LOCK_FILE_NAME,
    PID_FILE_NAME,
    STALE_RUN_MESSAGE,
    PrefectServerError,
    managed_prefect_server,
    stop_leftover_server,
)

ROOT = Path(__file__).resolve().parents[2]

# A `tradeflow run` stand-in that is SIGKILLed while its flow's task sleeps.
KILLED_RUN = """
import json, sys, time
from pathlib import Path
from prefect import flow, task
from prefect.runtime import flow_run, task_run
from cli.prefect_server import managed_prefect_server

var = Path(sys.argv[1])

@task
def wait_to_be_killed() -> None:
    ids = {"flow_run": flow_run.id, "task_run": task_run.id}
    (var / "ids.tmp").write_text(json.dumps(ids))
    (var / "ids.tmp").rename(var / "ids.json")
    time.sleep(600)

@flow
def doomed() -> None:
    wait_to_be_killed()

with managed_prefect_server(var):
    doomed()
"""

# The next `tradeflow run`: what it finds once its server is up, then a normal exit.
NEXT_RUN = """
import json, sys
from pathlib import Path
from cli.prefect_server import managed_prefect_server
from prefect.client.orchestration import get_client

var = Path(sys.argv[1])
with managed_prefect_server(var) as url:
    with get_client(sync_client=True) as client:
        runs = [*client.read_flow_runs(), *client.read_task_runs()]
    states = {str(r.id): [r.state.type.value, r.state.message] for r in runs}
    pid_file = json.loads((var / "prefect" / sys.argv[2]).read_text())
print(json.dumps({"url": url, "pid_file": pid_file, "states": states}))
"""


@dataclass(frozen=True)
class Restart:
    killed_server: int  # pid (and process group) of the server the killed run left
    orphan_alive_after_kill: bool
    ids: dict[str, str]  # the flow and task run the killed run left Running
    next_run: dict[str, Any]  # what the next run printed
    var_dir: Path


def _group_alive(pgid: int) -> bool:
    """Any member of the process group that is not a zombie."""
    ps = subprocess.run(["ps", "-o", "stat=", "-g", str(pgid)], capture_output=True, text=True)
    return any(line.strip() and not line.strip().startswith("Z") for line in ps.stdout.splitlines())


def _env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(var_dir / "prefect")
    return env


def _wait_for(path: Path, child: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert child.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no {path.name} after {timeout_s} s: {log.read_text()}"
        time.sleep(0.1)


def _wait_running(url: str, ids: dict[str, str], timeout_s: float) -> None:
    """Task run states travel as events; wait until the server has recorded both as Running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        flow = httpx.get(f"{url}/flow_runs/{ids['flow_run']}").json()
        task = httpx.get(f"{url}/task_runs/{ids['task_run']}").json()
        if flow.get("state_type") == task.get("state_type") == "RUNNING":
            return
        time.sleep(0.1)
    pytest.fail("the killed run's flow and task runs never showed Running")


def _kill_a_run(var_dir: Path) -> tuple[int, dict[str, str]]:
    """Start the stand-in, wait until its task runs, SIGKILL it: its server is orphaned."""
    log = var_dir / "killed-run.log"
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_RUN, str(var_dir)],
            cwd=ROOT,
            env=_env(var_dir),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(var_dir / "ids.json", child, log, timeout_s=90)
        ids = json.loads((var_dir / "ids.json").read_text())
        record = json.loads((var_dir / "prefect" / PID_FILE_NAME).read_text())
        _wait_running(f"http://127.0.0.1:{record['port']}/api", ids, timeout_s=20)
    finally:
        child.kill()
        child.wait()
    return int(record["pid"]), ids


@pytest.fixture(scope="module")
def restart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restart]:
    """One killed run, then the next start with the same var dir, observed once for all tests."""
    var_dir = tmp_path_factory.mktemp("var")
    killed_server, ids = _kill_a_run(var_dir)
    orphan_alive = _group_alive(killed_server)
    try:
        done = subprocess.run(
            [sys.executable, "-c", NEXT_RUN, str(var_dir), PID_FILE_NAME],
            cwd=ROOT,
            env=_env(var_dir),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        next_run = json.loads(done.stdout.strip().splitlines()[-1])
        yield Restart(killed_server, orphan_alive, ids, next_run, var_dir)
    finally:
        if _group_alive(killed_server):
            os.killpg(killed_server, signal.SIGKILL)


def test_start_when_an_earlier_run_was_killed_then_its_orphaned_server_stopped_and_pid_replaced(
    restart: Restart,
) -> None:
    assert restart.orphan_alive_after_kill  # SIGKILL reached the run, never its server
    assert not _group_alive(restart.killed_server)
    assert restart.next_run["pid_file"]["pid"] != restart.killed_server
    assert restart.next_run["url"] == f"http://127.0.0.1:{restart.next_run['pid_file']['port']}/api"


def test_start_when_an_earlier_run_left_runs_running_then_they_are_crashed_with_the_reason(
    restart: Restart,
) -> None:
    states = restart.next_run["states"]
    assert states[restart.ids["flow_run"]] == ["CRASHED", STALE_RUN_MESSAGE]
    assert states[restart.ids["task_run"]] == ["CRASHED", STALE_RUN_MESSAGE]


def test_exit_when_the_block_ends_normally_then_server_group_gone_and_pid_file_removed(
    restart: Restart,
) -> None:
    assert not _group_alive(restart.next_run["pid_file"]["pid"])
    assert not (restart.var_dir / "prefect" / PID_FILE_NAME).exists()
    assert (restart.var_dir / "logs" / "prefect-server.log").is_file()


def test_enter_when_the_user_set_prefect_api_url_then_nothing_is_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    with managed_prefect_server(tmp_path) as url:
        assert url == "http://127.0.0.1:9/api"
        assert not (tmp_path / "prefect" / PID_FILE_NAME).exists()
    assert not (tmp_path / "logs").exists()
    assert os.environ["PREFECT_API_URL"] == "http://127.0.0.1:9/api"


def test_enter_when_another_run_holds_the_prefect_home_then_refused_before_any_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    (tmp_path / "prefect").mkdir()
    # a session-wide Prefect test harness may have set an API URL: this test has none
    with (
        temporary_settings(restore_defaults={PREFECT_API_URL}),
        FileLock(tmp_path / "prefect" / LOCK_FILE_NAME),
        pytest.raises(PrefectServerError, match="another `tradeflow run` is using"),
        managed_prefect_server(tmp_path),
    ):
        pass
    assert not (tmp_path / "logs").exists()


def test_stop_leftover_when_the_pid_is_now_another_program_then_it_is_left_alone(
    tmp_path: Path,
) -> None:
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        pid_file = tmp_path / PID_FILE_NAME
        pid_file.write_text(json.dumps({"pid": other.pid, "port": 4321}))
        stop_leftover_server(pid_file)
        assert other.poll() is None
        assert not pid_file.exists()
    finally:
        other.kill()
        other.wait()
