"""X-Correlation-ID: the caller's valid id, or a fresh uuid4 hex, is bound for the whole request
(async routes, the thread pool, a WebSocket) and returned; a malformed one is refused before
anything runs; the real API's log lines of a kill switch carry it, over loopback HTTP too."""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from infra.logging import configure_logging, reset_logging
from infra.settings import Settings
from services.correlation import correlation_id
from serving.app import SERVER_OPTIONS
from serving.correlation import HEADER, INVALID_DETAIL, CorrelationIdMiddleware
from tests.serving.conftest import SECRET, URL, body, make_client, signed

DECISION = "paper:BTC/USDT:1h:1706950800"
UUID_HEX = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def calls() -> list[str | None]:
    return []


@pytest.fixture
def tiny(calls: list[str | None]) -> Iterator[TestClient]:
    """The middleware around an app whose routes say which id they run under."""

    async def in_loop(_: Request) -> JSONResponse:
        calls.append(correlation_id())
        return JSONResponse({"id": correlation_id()})

    def in_thread(_: Request) -> JSONResponse:  # a sync route: Starlette's thread pool
        calls.append(correlation_id())
        return JSONResponse({"id": correlation_id()})

    async def socket(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_json({"id": correlation_id()})
        await ws.close()

    app = Starlette(
        routes=[Route("/async", in_loop), Route("/sync", in_thread), WebSocketRoute("/ws", socket)],
        middleware=[Middleware(CorrelationIdMiddleware)],
    )
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize("path", ["/async", "/sync"])
def test_request_when_valid_id_sent_then_bound_in_the_route_and_echoed(
    tiny: TestClient, path: str
) -> None:
    answer = tiny.get(path, headers={HEADER: DECISION})
    assert answer.status_code == 200
    assert answer.json() == {"id": DECISION}
    assert answer.headers[HEADER] == DECISION
    assert correlation_id() is None  # nothing leaks out of the request


def test_request_when_no_id_sent_then_a_fresh_uuid4_hex_each_time(tiny: TestClient) -> None:
    first, second = tiny.get("/async"), tiny.get("/sync")
    ids = [first.headers[HEADER], second.headers[HEADER]]
    assert all(UUID_HEX.fullmatch(i) for i in ids)
    assert ids[0] != ids[1]
    assert [first.json()["id"], second.json()["id"]] == ids


@pytest.mark.parametrize(
    "given",
    ["x" * 129, "has space", "new\tline", "<script>", "", "drop;table", "é-accent"],
)
def test_request_when_id_malformed_then_400_naming_the_rule_and_no_route_runs(
    tiny: TestClient, calls: list[str | None], given: str
) -> None:
    answer = tiny.get("/async", headers={HEADER: given.encode()})  # bytes: as sent on the wire
    assert answer.status_code == 400
    assert answer.json() == {"detail": INVALID_DETAIL}
    assert UUID_HEX.fullmatch(answer.headers[HEADER])  # the refusal's own id, never the input
    assert calls == []


def test_request_when_id_at_the_limit_then_accepted(tiny: TestClient) -> None:
    longest = "a:b/c._-" * 16  # 128 characters, every allowed punctuation
    assert tiny.get("/async", headers={HEADER: longest}).headers[HEADER] == longest


def test_websocket_when_valid_id_then_bound_and_in_the_handshake_answer(tiny: TestClient) -> None:
    with tiny.websocket_connect("/ws", headers={HEADER: DECISION}) as ws:
        assert ws.receive_json() == {"id": DECISION}


def test_websocket_when_id_malformed_then_closed_with_policy_violation(tiny: TestClient) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        tiny.websocket_connect("/ws", headers={HEADER: "bad id"}),
    ):
        pass
    assert closed.value.code == 1008


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(Settings(kill_switch_secret=SECRET), stream)
    try:
        yield stream
    finally:
        reset_logging()


def test_kill_switch_when_activated_with_an_id_then_its_log_lines_carry_it_and_no_secret(
    ledger_url: str, log_lines: io.StringIO
) -> None:
    with make_client(ledger_url) as api:
        answer = api.post(
            URL, json=body(), headers=signed("activate") | {HEADER: "ops-drill/2026-11-24"}
        )
    assert answer.status_code == 200
    assert answer.headers[HEADER] == "ops-drill/2026-11-24"
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    alerts = [line for line in lines if line["logger"] == "tradeflow.alerts"]
    assert alerts  # the kill switch's alert, logged while the request ran (thread pool)
    assert {line["correlation_id"] for line in alerts} == {"ops-drill/2026-11-24"}
    assert SECRET not in log_lines.getvalue()


@contextmanager
def serving(app: object) -> Iterator[str]:
    """uvicorn on a free loopback port in a thread, with `tradeflow serve`'s options."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **SERVER_OPTIONS)  # type: ignore[arg-type]
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.02)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_api_over_loopback_when_health_asked_then_the_id_comes_back_or_is_made(
    ledger_url: str,
) -> None:
    with make_client(ledger_url) as client, serving(client.app) as base:
        given = httpx.get(f"{base}/api/v1/health", headers={HEADER: DECISION}, timeout=10)
        made = httpx.get(f"{base}/api/v1/health", timeout=10)
        refused = httpx.get(f"{base}/api/v1/health", headers={HEADER: "a b"}, timeout=10)
    assert given.headers[HEADER] == DECISION
    assert UUID_HEX.fullmatch(made.headers[HEADER])
    assert (refused.status_code, refused.json()) == (400, {"detail": INVALID_DETAIL})
