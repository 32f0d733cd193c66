"""Fixtures for the deployment files: the compose file as data, secret files made by
deploy/make-secrets.sh, and the services' own commands run as processes on this machine (no
Docker engine here)."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
import yaml

from infra.settings import OFFLINE_ENV

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
IMAGE_APP_DIR = "/app/"  # where the Dockerfile puts the repository
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
START_WITHIN_S = 120.0  # a server that is not up by then has failed to start


def load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", ROOT / "deploy/healthcheck.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = load_healthcheck()


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def make_secrets(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(ROOT / "deploy/make-secrets.sh"), str(directory)],
        capture_output=True,
        text=True,
        check=True,
    )


@pytest.fixture
def made_secrets(tmp_path: Path) -> Path:
    """The secret files, as deploy/make-secrets.sh writes them for `docker compose up`."""
    directory = tmp_path / "secrets"
    make_secrets(directory)
    return directory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local(argv: list[str]) -> list[str]:
    """A container's command as run here: the image's /app is this repository."""
    return [
        str(ROOT / a.removeprefix(IMAGE_APP_DIR)) if a.startswith(IMAGE_APP_DIR) else a
        for a in argv
    ]


def clean_env(service_env: Mapping[str, str], **values: str) -> dict[str, str]:
    """This process's environment without tradeflow's, Prefect's or MLflow's own variables
    (a container starts without them), the offline switches the image sets, the service's
    compose environment, then `values` (what must differ here)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRADEFLOW_", "PREFECT_", "MLFLOW_"))
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env | OFFLINE_ENV | dict(service_env) | values


class Server:
    """A service's command running as a process group of its own (its workers die with it)."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.process = subprocess.Popen(
            argv, env=dict(env), cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def wait_healthy(self, url: str) -> None:
        """Until `url` answers 2xx (deploy/healthcheck.py's check); fails with the output if
        the process ends first or is not up within START_WITHIN_S."""
        deadline = time.monotonic() + START_WITHIN_S
        while (problem := healthcheck.check(url, timeout=2.0)) is not None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{url}: {problem}; output:\n{self.output()[-4000:]}")
            time.sleep(0.25)

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._out.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test starts (append them); stopped at its end, newest first."""
    started: list[Server] = []
    yield started
    for server in reversed(started):
        server.stop()


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """A new, empty PostgreSQL database on the test server (a service makes its own schema
    in it, as in its own container); dropped at the end."""
    name = f"deploy_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:  # a missing server is a broken machine
        pytest.fail(f"PostgreSQL at {POSTGRES_ADMIN} unavailable: {exc}")
    yield name
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
