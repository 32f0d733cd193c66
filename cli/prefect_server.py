"""The Prefect server `tradeflow run` owns, so a killed run cannot leave one behind for good.

Without `PREFECT_API_URL` Prefect starts a temporary server as a child process and stops it at
interpreter exit. A SIGKILL skips that: the server lives on as an orphan and the flow and task
runs it recorded stay "Running" forever in the UI. Here the CLI starts the server itself, in its
own process group, and writes its pid beside the runs it keeps (PREFECT_HOME, by default
`<var_dir>/prefect/`); the next `tradeflow run` stops a server that a dead run left behind and
marks that run's flow and task runs Crashed. Only one `tradeflow run` uses a Prefect home at a
time (a lock file enforces it), so every run still Running or Pending when the server starts
belongs to a process that died.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from filelock import FileLock, Timeout

from core.errors import TradeflowError
from infra.settings import apply_offline_env

PID_FILE_NAME = "tradeflow-server.pid"
LOCK_FILE_NAME = "tradeflow-server.lock"
LOG_FILE_NAME = "prefect-server.log"
STALE_RUN_MESSAGE = "the process running it died; found at the next start (tradeflow run)"
STOP_GRACE_S = 5.0  # SIGTERM first: the server closes SQLite cleanly; SIGKILL after this
DEFAULT_STARTUP_TIMEOUT_S = 60.0
_STALE_STATES = ("RUNNING", "PENDING")
_PAGE = 200


class PrefectServerError(TradeflowError):
    """The run's Prefect server could not be started (or another run holds its Prefect home)."""


@contextlib.contextmanager
def managed_prefect_server(var_dir: Path, startup_timeout_s: float | None = None) -> Iterator[str]:
    """Yield the Prefect API URL to use: the user's own, untouched, when one is configured;
    otherwise a server started here, after stopping one a killed run left, with that run's
    flow and task runs marked Crashed. The server stops when the block ends, however it ends."""
    apply_offline_env(var_dir)  # PREFECT_HOME (where the server keeps its runs), offline flags
    configured = _configured_api_url()
    if configured is not None:
        yield configured
        return
    home = Path(os.environ["PREFECT_HOME"])  # the lock and pid file guard this database
    home.mkdir(parents=True, exist_ok=True)
    with _exclusive(home / LOCK_FILE_NAME):
        pid_file = home / PID_FILE_NAME
        stop_leftover_server(pid_file)
        log = var_dir / "logs" / LOG_FILE_NAME
        server, url = _start_server(log, pid_file)
        try:
            _wait_until_healthy(server, url, _startup_timeout(startup_timeout_s), log)
            _use_api_url(url)
            crash_stale_runs()
            yield url
        finally:
            _drain_prefect_workers()
            _use_api_url(None)
            _stop_group(server.pid, STOP_GRACE_S, server)
            pid_file.unlink(missing_ok=True)


def _configured_api_url() -> str | None:
    """The API URL the user chose (environment, Prefect profile, an active settings context):
    then this module must do nothing. Prefect reads profiles under PREFECT_HOME."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from prefect.settings import get_current_settings

    return get_current_settings().api.url or None


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Refuse a second concurrent run on the same Prefect home: it would stop this run's server and
    crash its live runs. The OS releases the lock when a killed process dies."""
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise PrefectServerError(
            f"another `tradeflow run` is using {lock_path.parent}; wait for it to finish"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _startup_timeout(explicit: float | None) -> float:
    """Honour the timeout users already set for Prefect's own temporary server."""
    if explicit is not None:
        return explicit
    raw = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")
    return float(raw) if raw else DEFAULT_STARTUP_TIMEOUT_S


def _server_args(port: int) -> list[str]:
    """`prefect` from this interpreter's environment; no UI, like Prefect's temporary server
    (`make ui` serves the UI over the same database afterwards)."""
    prefect = str(Path(sys.executable).parent / "prefect")
    return [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"]


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(log_path: Path, pid_file: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start the server as the leader of a new process group (so one signal reaches all of it
    and a Ctrl-C in the terminal reaches only us) and record its pid before anything else."""
    port = _free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        try:
            server = subprocess.Popen(
                _server_args(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ),
                start_new_session=True,
            )
        except OSError as exc:
            raise PrefectServerError(f"cannot start the Prefect server: {exc}") from exc
    pid_file.write_text(json.dumps({"pid": server.pid, "port": port}))
    return server, f"http://127.0.0.1:{port}/api"


def _wait_until_healthy(
    server: subprocess.Popen[bytes], url: str, timeout_s: float, log: Path
) -> None:
    """Poll /health until it answers 200; fail in one line if the server exits or is slow."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise PrefectServerError(
                    f"the Prefect server exited with code {server.returncode} at start; see {log}"
                )
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"{url}/health").status_code == 200:
                    return
            time.sleep(0.1)
    raise PrefectServerError(
        f"the Prefect server did not answer at {url}/health within {timeout_s:g} s; see {log}"
    )


def _use_api_url(url: str | None) -> None:
    """Point this process's Prefect at `url` (None: back to unset). Prefect snapshots the
    environment into a global settings context when first imported, so refresh it."""
    if url is None:
        os.environ.pop("PREFECT_API_URL", None)
    else:
        os.environ["PREFECT_API_URL"] = url
    if "prefect.context" in sys.modules:
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()


def stop_leftover_server(pid_file: Path) -> None:
    """Stop the server an earlier, killed run left (its pid file is still there), if that pid
    is still our server; a pid the system has since given to another program is left alone."""
    record = _read_pid_file(pid_file)
    if record is not None:
        pid, port = record
        if _is_our_server(pid, port) or _leaderless_group_alive(pid):
            _stop_group(pid, STOP_GRACE_S)
    pid_file.unlink(missing_ok=True)


def _read_pid_file(pid_file: Path) -> tuple[int, int] | None:
    try:
        record = json.loads(pid_file.read_text())
        return int(record["pid"]), int(record["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _command_line(pid: int) -> list[str]:
    """The process's argv: /proc where there is one, `ps` elsewhere; [] once it is gone."""
    if Path("/proc/self/cmdline").exists():
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return []
        return [a for a in raw.decode(errors="replace").split("\0") if a]
    done = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True)
    return done.stdout.split()


def _is_our_server(pid: int, port: int) -> bool:
    """Alive, leading its own process group, and running our exact `prefect server start`."""
    try:
        if os.getpgid(pid) != pid:
            return False
    except ProcessLookupError:
        return False
    argv = _command_line(pid)
    tail = _server_args(port)[1:]
    return argv[-len(tail) :] == tail and any(Path(a).name == "prefect" for a in argv)


def _leaderless_group_alive(pgid: int) -> bool:
    """Members of our server's group outlived their leader. The system does not reuse a pid
    while a process group of that id exists, so such a group is still ours."""
    try:
        os.getpgid(pgid)
        return False  # the leader lives (and _is_our_server said it is not ours)
    except ProcessLookupError:
        return _group_alive(pgid)


def _is_zombie(pid: int) -> bool:
    """Dead but not yet reaped by its parent: gone for our purposes (Linux; elsewhere: no)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pgid)


def _stop_group(pgid: int, grace_s: float, leader: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the whole group, SIGKILL what is left after `grace_s`; reap our own child."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if leader is not None:
            leader.poll()
        if not _group_alive(pgid):
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    if leader is not None:
        leader.wait()


def _drain_prefect_workers() -> None:
    """Send the logs and events Prefect still queues before their server goes away (else they
    fail at interpreter exit), as Prefect's own test harness does."""
    if "prefect.logging.handlers" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=5, at_exit=False)


def crash_stale_runs() -> int:
    """Mark Crashed every flow and task run still Running or Pending: called before this
    run's own flow starts, with the Prefect home locked, so their process is gone. Returns how
    many."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    stale = [StateType(s) for s in _STALE_STATES]
    flow_filter = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=stale)))
    task_filter = TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=stale)))
    with get_client(sync_client=True) as client:
        flow_runs = _all(lambda o: client.read_flow_runs(flow_run_filter=flow_filter, **o))
        task_runs = _all(lambda o: client.read_task_runs(task_run_filter=task_filter, **o))
        for run in flow_runs:
            client.set_flow_run_state(run.id, Crashed(message=STALE_RUN_MESSAGE), force=True)
        for run in task_runs:
            client.set_task_run_state(run.id, Crashed(message=STALE_RUN_MESSAGE), force=True)
    return len(flow_runs) + len(task_runs)


def _all(read: Callable[[dict[str, int]], list[Any]]) -> list[Any]:
    """Every page of a `read_*_runs` query (the server caps a page at 200)."""
    found: list[Any] = []
    while page := read({"limit": _PAGE, "offset": len(found)}):
        found.extend(page)
        if len(page) < _PAGE:
            break
    return found
