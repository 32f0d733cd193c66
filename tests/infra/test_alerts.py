"""Alerts go out through apprise: here to a JSON webhook on a loopback HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from infra.alerts import Alerts


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, object]]]]:
    received: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"json://127.0.0.1:{server.server_address[1]}/alerts", received
    server.shutdown()


def test_send_when_apprise_url_configured_then_webhook_receives_title_and_body(
    webhook: tuple[str, list[dict[str, object]]],
) -> None:
    url, received = webhook
    assert Alerts([url]).send("tradeflow kill switch ACTIVE", "cancelled 3 orders")
    [message] = received
    assert message["title"] == "tradeflow kill switch ACTIVE"
    assert message["message"] == "cancelled 3 orders"


def test_send_when_notifier_unreachable_then_false_logged_and_no_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    alerts = Alerts(["json://127.0.0.1:9/nowhere"])  # discard port: nothing listens
    assert alerts.send("t", "b") is False
    assert alerts.sent == [("t", "b")]
    assert "ALERT t: b" in caplog.text
