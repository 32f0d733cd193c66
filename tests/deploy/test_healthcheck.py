"""deploy/healthcheck.py, the containers' health check, against a real loopback server."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.deploy.conftest import ROOT, free_port

SCRIPT = str(ROOT / "deploy/healthcheck.py")


class _Handler(BaseHTTPRequestHandler):
    """GET /status/NNN answers NNN."""

    def do_GET(self) -> None:
        self.send_response(int(self.path.rsplit("/", 1)[-1]))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


@pytest.mark.parametrize("status", [200, 204])
def test_healthcheck_when_server_answers_2xx_then_exits_0(base_url: str, status: int) -> None:
    result = _run(f"{base_url}/status/{status}")
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize("status", [404, 500, 503])
def test_healthcheck_when_server_answers_an_error_then_exits_1_naming_the_status(
    base_url: str, status: int
) -> None:
    result = _run(f"{base_url}/status/{status}")
    assert result.returncode == 1
    assert result.stderr.strip() == f"unhealthy: {base_url}/status/{status}: HTTP {status}"


def test_healthcheck_when_nothing_listens_then_exits_1_naming_the_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/api/v1/health"
    result = _run(url)
    assert result.returncode == 1
    assert result.stderr.startswith(f"unhealthy: {url}: URLError")


@pytest.mark.parametrize("args", [(), ("http://a", "http://b")])
def test_healthcheck_when_not_given_one_url_then_exits_2_with_usage(args: tuple[str, ...]) -> None:
    result = _run(*args)
    assert (result.returncode, result.stderr.strip()) == (2, "usage: healthcheck.py URL")
