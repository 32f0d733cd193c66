"""The services' own commands from docker-compose.yml, run here as processes (no Docker engine
on these machines): each starts on its secret files, against PostgreSQL where compose gives it
PostgreSQL, and passes its compose health check. What differs from a container is only what
must: loopback and free ports for the compose host names and fixed ports, temporary folders
for the volumes, and the test server's PostgreSQL user in the secret URLs."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.deploy.compose_checks import environment
from tests.deploy.conftest import ROOT, Server, clean_env, free_port, local

pytestmark = pytest.mark.slow


def _health_argv(service: dict[str, Any], port: int) -> list[str]:
    """The service's compose health check, pointed at `port` on this host."""
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD"
    argv = local(test[1:])
    url = urlsplit(argv[-1])
    argv[-1] = url._replace(netloc=f"127.0.0.1:{port}").geturl()
    return argv


def _health_url(service: dict[str, Any], port: int) -> str:
    return _health_argv(service, port)[-1]


def _passes_health_check(service: dict[str, Any], port: int, env: dict[str, str]) -> bool:
    result = subprocess.run(_health_argv(service, port), env=env, capture_output=True, text=True)
    return result.returncode == 0


def _api_argv(api: dict[str, Any], port: int) -> list[str]:
    argv = local(api["command"])
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    return argv


def _api_env(api: dict[str, Any], tmp_path: Path, secrets: Path) -> dict[str, str]:
    # The ledger and Redis URLs in the secret files name compose hosts: the environment wins
    # over a secret file, so these point the API at this machine's instead.
    return clean_env(
        environment(api),
        TRADEFLOW_SECRETS_DIR=str(secrets),
        TRADEFLOW_VAR_DIR=str(tmp_path / "var"),
        TRADEFLOW_DATABASE_URL=f"sqlite:///{tmp_path / 'ledger.db'}",
        TRADEFLOW_MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        TRADEFLOW_REDIS_URL="redis://127.0.0.1:6379/0",
    )


def test_api_when_run_as_compose_runs_it_then_starts_on_its_secret_files_and_is_healthy(
    compose: dict[str, Any], made_secrets: Path, tmp_path: Path, servers: list[Server]
) -> None:
    api = compose["services"]["api"]
    port = free_port()
    env = _api_env(api, tmp_path, made_secrets)
    server = Server(_api_argv(api, port), env, tmp_path / "api.log")
    servers.append(server)
    server.wait_healthy(_health_url(api, port))
    assert _passes_health_check(api, port, env)
    assert httpx.get(_health_url(api, port)).json()["ledger"] == "ok"


def test_api_when_its_kill_switch_secret_file_is_missing_then_refuses_to_start(
    compose: dict[str, Any], made_secrets: Path, tmp_path: Path
) -> None:
    """The API starts above because of the file: without it, it refuses (no default secret)."""
    api = compose["services"]["api"]
    (made_secrets / "tradeflow_kill_switch_secret").unlink()
    result = subprocess.run(
        _api_argv(api, free_port()),
        env=_api_env(api, tmp_path, made_secrets),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "refusing to start" in result.stdout


def _secrets(tmp_path: Path, **files: str) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    for name, value in files.items():
        (directory / name).write_text(value + "\n")
    return directory


def test_mlflow_when_run_as_compose_runs_it_then_healthy_on_postgres_and_serves_known_hosts_only(
    compose: dict[str, Any], fresh_database: str, tmp_path: Path, servers: list[Server]
) -> None:
    mlflow = compose["services"]["mlflow"]
    secrets = _secrets(
        tmp_path,
        mlflow_backend_store_uri=f"postgresql+psycopg://postgres@127.0.0.1:5432/{fresh_database}",
    )
    port = free_port()
    env = clean_env(
        environment(mlflow),
        MLFLOW_HOST="127.0.0.1",
        MLFLOW_PORT=str(port),
        MLFLOW_ARTIFACTS_DESTINATION=str(tmp_path / "artifacts"),
        TRADEFLOW_SECRETS_DIR=str(secrets),
    )
    server = Server(local(mlflow["command"]), env, tmp_path / "mlflow.log")
    servers.append(server)
    server.wait_healthy(_health_url(mlflow, port))
    assert _passes_health_check(mlflow, port, env)
    search = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=5"
    # The Host header the containers send (TRADEFLOW_MLFLOW_TRACKING_URI) is served ...
    tracking = urlsplit(environment(compose["services"]["worker"])["TRADEFLOW_MLFLOW_TRACKING_URI"])
    answer = httpx.get(search, headers={"Host": tracking.netloc})
    assert answer.status_code == 200
    assert [e["name"] for e in answer.json()["experiments"]] == ["Default"]  # its own database
    # ... one it does not know is refused (DNS rebinding).
    assert httpx.get(search, headers={"Host": "evil.example:5000"}).status_code == 403


def _deployments(api_url: str) -> dict[str, str]:
    """Deployment name -> work pool, as the Prefect server has them."""
    answer = httpx.post(f"{api_url}/deployments/filter", json={})
    answer.raise_for_status()
    return {d["name"]: d["work_pool_name"] for d in answer.json()}


def test_prefect_server_and_worker_when_run_as_compose_runs_them_then_prefect_yaml_deployed(
    compose: dict[str, Any], fresh_database: str, tmp_path: Path, servers: list[Server]
) -> None:
    prefect_server = compose["services"]["prefect-server"]
    worker = compose["services"]["worker"]
    secrets = _secrets(
        tmp_path,
        prefect_database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{fresh_database}",
    )
    port = free_port()
    server_env = clean_env(
        environment(prefect_server),
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_HOME=str(tmp_path / "server-home"),
        TRADEFLOW_SECRETS_DIR=str(secrets),
        # Here only: no run is scheduled while this test's worker polls.
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
    )
    server = Server(local(prefect_server["command"]), server_env, tmp_path / "server.log")
    servers.append(server)
    server.wait_healthy(_health_url(prefect_server, port))
    assert _passes_health_check(prefect_server, port, server_env)

    api_url = f"http://127.0.0.1:{port}/api"
    expected = {
        d["name"]: d["work_pool"]["name"]
        for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    }
    # Twice: a restarted worker finds its pool and deployments there and starts all the same.
    for attempt in ("first", "restart"):
        worker_port = free_port()
        worker_env = clean_env(
            environment(worker),
            PREFECT_API_URL=api_url,
            PREFECT_WORKER_WEBSERVER_PORT=str(worker_port),
            PREFECT_HOME=str(tmp_path / f"worker-home-{attempt}"),
            TRADEFLOW_VAR_DIR=str(tmp_path / "var"),
            TRADEFLOW_MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        )
        started = Server(local(worker["command"]), worker_env, tmp_path / f"worker-{attempt}.log")
        servers.append(started)
        started.wait_healthy(_health_url(worker, worker_port))
        assert _passes_health_check(worker, worker_port, worker_env)
        assert _deployments(api_url) == expected
        started.stop()
