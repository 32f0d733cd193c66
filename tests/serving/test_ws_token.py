"""A WebSocket client is closed once its token stops being valid while it is connected, as
the next REST request with that token would be refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from core.auth import Scope
from core.clock import FakeClock
from serving.routes import ws as ws_route
from serving.ws import TOKEN_GONE
from tests.serving.conftest import NOW, make_client
from tests.serving.tokens import issue_token


def test_ws_when_the_token_expires_while_connected_then_closed_with_4401(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws_route, "RECHECK_S", 0.05)
    clock = FakeClock(NOW)
    token = issue_token(ledger_url, Scope.READ, expires_at=NOW + timedelta(minutes=1))
    with (
        make_client(ledger_url, clock) as client,
        client.websocket_connect(f"/api/v1/ws?token={token}") as ws,
    ):
        ws.send_json({"op": "subscribe", "channels": ["safety"]})
        assert ws.receive_json()["type"] == "subscribed"
        clock.advance(minutes=2)
        with pytest.raises(WebSocketDisconnect) as closed:
            read_until_closed(ws)

    assert closed.value.code == TOKEN_GONE


def read_until_closed(ws: WebSocketTestSession) -> None:
    while True:  # heartbeats may come first
        ws.receive_json()
