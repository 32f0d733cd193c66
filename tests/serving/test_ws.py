"""The WebSocket /api/v1/ws end to end, on SQLite and PostgreSQL: a real uvicorn server in its
own process over a real ledger, the `websockets` client library here, and the events written
by a third process (tests/serving/ws_writer.py, as a flow worker would). Every wait is bounded
by a timeout; none is a measure of speed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from core.auth import Scope
from core.events import Event, EventKind
from infra.ledger.database import engine_for
from infra.ledger.events import append
from infra.ledger.ledger import open_ledger
from serving.ws import OutboxCursor
from tests.conftest import ROOT, _postgres_schema_url
from tests.infra.ledger.test_ledger import T0
from tests.serving.conftest import SECRET
from tests.serving.tokens import bearer, issue_token

TIMEOUT_S = 30.0  # any one wait; a healthy run takes a fraction of it
QUEUE_SIZE = 8  # the server's TRADEFLOW_WS_QUEUE_SIZE
HEARTBEAT_S = 0.3
Message = dict[str, Any]


@dataclass(frozen=True)
class Server:
    ledger_url: str
    url: str  # ws://127.0.0.1:PORT/api/v1/ws
    port: int
    token: str


def start_server(ledger_url: str, var: Path) -> tuple[subprocess.Popen[bytes], int]:
    """uvicorn serving the app on a free port, in its own process; its port from its log."""
    env = os.environ | {
        "TRADEFLOW_DATABASE_URL": ledger_url,
        "TRADEFLOW_KILL_SWITCH_SECRET": SECRET,
        "TRADEFLOW_VAR_DIR": str(var),
        "TRADEFLOW_WS_HEARTBEAT_S": str(HEARTBEAT_S),
        "TRADEFLOW_WS_QUEUE_SIZE": str(QUEUE_SIZE),
    }
    log = var / "server.log"
    command = [sys.executable, "-m", "uvicorn", "serving.app:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", "0", "--no-access-log"]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if found := re.search(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)", log.read_bytes()):
            return proc, int(found[1])
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"the API did not start:\n{log.read_text()}")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    var = tmp_path_factory.mktemp("ws")
    schema = _postgres_schema_url() if request.param == "postgresql" else None
    ledger_url = next(schema) if schema else f"sqlite:///{var / 'ledger.db'}"
    token = issue_token(open_ledger(ledger_url), Scope.READ)  # migrated here, before the API
    proc, port = start_server(ledger_url, var)
    try:
        yield Server(ledger_url, f"ws://127.0.0.1:{port}/api/v1/ws", port, token)
    finally:
        proc.terminate()
        proc.wait(30)
        engine_for(ledger_url).dispose()
        if schema:
            schema.close()  # drops the schema


def client(server: Server, **options: Any) -> connect:
    options.setdefault("additional_headers", bearer(server.token))
    return connect(server.url, proxy=None, open_timeout=TIMEOUT_S, **options)


async def receive(ws: ClientConnection) -> Message:
    """The next message that is not a heartbeat."""
    async with asyncio.timeout(TIMEOUT_S):
        while (message := json.loads(await ws.recv()))["type"] == "heartbeat":
            pass
    return message


async def subscribe(ws: ClientConnection, *channels: str, op: str = "subscribe") -> Message:
    await ws.send(json.dumps({"op": op, "channels": list(channels)}))
    return await receive(ws)


async def events_until(ws: ClientConnection, last: Callable[[Message], bool]) -> list[Message]:
    """Every event received up to the first one `last` accepts (included)."""
    events: list[Message] = []
    while not events or not last(events[-1]):
        message = await receive(ws)
        assert message["type"] == "event", message
        events.append(message)
    return events


def denied_decision(event: Message) -> bool:
    """The trade writer's last event: a decision the risk gate denied."""
    return event["kind"] == "decision.made" and event["data"].get("risk_approved") is False


def flood_marker(event: Message) -> bool:
    return event["correlation_id"] == "flood-marker"


async def write(server: Server, *args: object) -> None:
    """Run the writer process (tests/serving/ws_writer.py) to its end."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.serving.ws_writer", server.ledger_url, *map(str, args),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(120):
        _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def written_while_listening(
    server: Server,
    args: tuple[object, ...],
    *readers: tuple[ClientConnection, Callable[[Message], bool]],
) -> list[list[Message]]:
    """Start reading each client until its last event, run the writer, wait for all."""
    reading = [asyncio.create_task(events_until(ws, last)) for ws, last in readers]
    await write(server, *args)
    return list(await asyncio.gather(*reading))


def test_subscribe_when_events_written_by_another_process_then_only_subscribed_channels(
    server: Server,
) -> None:
    async def scenario() -> tuple[Message, list[Message], list[Message]]:
        async with client(server) as decisions, client(server) as everything:
            ack = await subscribe(decisions, "decisions")
            await subscribe(everything, "orders", "positions", "decisions", "safety")
            seen = await written_while_listening(
                server, ("trade", 1), (decisions, denied_decision), (everything, denied_decision)
            )
        return ack, seen[0], seen[1]

    ack, decisions, everything = asyncio.run(scenario())

    assert ack == {"type": "subscribed", "channels": ["decisions"]}
    assert [e["kind"] for e in decisions] == ["decision.made", "decision.made"]
    assert [e["kind"] for e in everything] == [
        "decision.made",
        "order.created",
        "order.updated",
        "fill.recorded",
        "order.updated",
        "position.changed",
        "safety.kill_switch",
        "safety.kill_switch",
        "decision.made",
    ]
    trade = everything[:6]
    assert {e["correlation_id"] for e in trade} == {decisions[0]["correlation_id"]}
    assert [e["id"] for e in everything] == sorted(e["id"] for e in everything)
    assert everything[5]["channel"] == "positions"
    assert everything[5]["data"]["quantity"] == "0.01753"
    assert everything[6]["data"]["trading_state"] == "halted"


def test_unsubscribe_when_acknowledged_then_that_channel_stops(server: Server) -> None:
    async def scenario() -> tuple[Message, list[Message]]:
        async with client(server) as ws:
            await subscribe(ws, "orders", "decisions")
            ack = await subscribe(ws, "orders", op="unsubscribe")
            [seen] = await written_while_listening(server, ("trade", 2), (ws, denied_decision))
        return ack, seen

    ack, seen = asyncio.run(scenario())

    assert ack == {"type": "unsubscribed", "channels": ["orders"], "subscribed": ["decisions"]}
    assert {e["channel"] for e in seen} == {"decisions"}
    assert len(seen) == 2


def test_heartbeat_when_connected_then_one_every_period_without_subscribing(
    server: Server,
) -> None:
    async def scenario() -> list[Message]:
        async with client(server) as ws, asyncio.timeout(TIMEOUT_S):
            return [json.loads(await ws.recv()) for _ in range(2)]

    beats = asyncio.run(scenario())

    assert [b["type"] for b in beats] == ["heartbeat", "heartbeat"]
    assert beats[0]["time"] < beats[1]["time"]  # ISO 8601 times of one zone sort as text


def test_bad_messages_when_sent_then_precise_errors_and_still_open(server: Server) -> None:
    async def scenario() -> list[Message]:
        async with client(server) as ws:
            answers = []
            for text in (
                "not json",
                '{"op": "subscribe", "channels": ["orders", "trades"]}',
                '{"op": "watch", "channels": ["orders"]}',
                '{"op": "subscribe"}',
                '{"op": "subscribe", "channels": ["orders"]}',
            ):
                await ws.send(text)
                answers.append(await receive(ws))
            return answers

    *errors, ack = asyncio.run(scenario())

    assert {e["type"] for e in errors} == {"error"}
    assert errors[0]["detail"].startswith("message: Invalid JSON")
    assert errors[1]["detail"] == (
        "unknown channel(s) trades: the channels are orders, positions, decisions, safety, metrics"
    )
    assert errors[2]["detail"].startswith("op: Input should be 'subscribe' or 'unsubscribe'")
    assert errors[3]["detail"] == "channels: Field required"
    assert ack == {"type": "subscribed", "channels": ["orders"]}


def test_bad_messages_when_too_many_then_closed_with_policy_violation(server: Server) -> None:
    async def scenario() -> tuple[list[Message], ConnectionClosed]:
        async with client(server) as ws:
            for _ in range(10):
                await ws.send("{}")
            return await until_closed(ws)

    answers, closed = asyncio.run(scenario())

    assert [a["detail"] for a in answers if a["type"] == "error"] == ["op: Field required"] * 10

    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1008, "too many bad messages")


def test_metrics_when_subscribed_then_a_snapshot_of_the_trading_counts(server: Server) -> None:
    async def scenario() -> tuple[Message, Message]:
        async with client(server) as ws:
            return await subscribe(ws, "metrics"), await receive(ws)

    ack, snapshot = asyncio.run(scenario())

    assert ack == {"type": "subscribed", "channels": ["metrics"]}
    assert (snapshot["kind"], snapshot["channel"], snapshot["id"]) == (
        "metrics.updated",
        "metrics",
        0,
    )
    assert snapshot["data"]["trading_state"] in {"active", "halted"}
    assert isinstance(snapshot["data"]["orders"], dict)


def slow_socket(port: int) -> socket.socket:
    """A connected socket that takes little before the server's sends block: a small receive
    buffer and a small segment size (so the server's send buffer stays small too)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def until_closed(ws: ClientConnection) -> tuple[list[Message], ConnectionClosed]:
    received = []
    async with asyncio.timeout(TIMEOUT_S):
        try:
            while True:
                received.append(json.loads(await ws.recv()))
        except ConnectionClosed as closed:
            return received, closed


def test_slow_consumer_when_it_never_reads_then_dropped_and_others_get_every_event(
    server: Server,
) -> None:
    n, size = 200, 4096

    async def scenario() -> tuple[list[Message], list[Message], ConnectionClosed]:
        sock = slow_socket(server.port)
        async with (
            client(server, compression=None) as good,
            client(server, compression=None, sock=sock, max_queue=1) as slow,
        ):
            await subscribe(good, "orders", "decisions")
            await subscribe(slow, "orders", "decisions")  # then it reads nothing more
            [seen] = await written_while_listening(server, ("flood", n, size), (good, flood_marker))
            received, closed = await until_closed(slow)
        return seen, received, closed

    seen, received, closed = asyncio.run(scenario())

    assert [e["data"]["n"] for e in seen[:-1]] == list(range(n))
    events = [m for m in received if m["type"] == "event"]
    assert len(events) < n
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (4008, "slow consumer")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer tf_000000000000_" + "A" * 43},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
    ids=["no token", "unknown token", "not bearer"],
)
def test_connect_when_no_valid_token_then_refused_before_the_websocket(
    server: Server, headers: dict[str, str]
) -> None:
    async def scenario() -> InvalidStatus:
        with pytest.raises(InvalidStatus) as refused:
            async with client(server, additional_headers=headers):
                pass
        return refused.value

    refused = asyncio.run(scenario())

    assert refused.response.status_code == 401
    assert refused.response.headers["WWW-Authenticate"] == "Bearer"
    assert "token" in json.loads(refused.response.body)["detail"]


def test_connect_when_token_in_query_then_accepted(server: Server) -> None:
    async def scenario() -> Message:
        url = f"{server.url}?token={server.token}"
        async with connect(url, proxy=None, open_timeout=TIMEOUT_S) as ws:
            return await subscribe(ws, "safety")

    assert asyncio.run(scenario()) == {"type": "subscribed", "channels": ["safety"]}


@pytest.mark.parametrize("server", ["postgresql"], indirect=True)
def test_events_when_committed_out_of_id_order_then_each_delivered_once(server: Server) -> None:
    """On PostgreSQL an id is taken at the write and readable at the commit: here id k
    commits after id k + 1, and both arrive, once each."""
    ledger = open_ledger(server.ledger_url)

    async def scenario() -> tuple[int, int, list[Message]]:
        async with client(server) as ws:
            await subscribe(ws, "safety", "decisions")
            with ledger._sessions.write() as s:  # open until the second event is delivered
                first = append(s, EventKind.KILL_SWITCH, {"n": 1}, T0)
                second = ledger.events.publish(EventKind.CIRCUIT_BREAKER, {"n": 2}, T0)
                early = [await receive(ws)]
            ledger.events.publish(EventKind.DECISION_MADE, {}, T0, "out-of-order-marker")
            late = await events_until(ws, lambda e: e["correlation_id"] == "out-of-order-marker")
        return first, second, early + late

    first, second, seen = asyncio.run(scenario())

    assert first < second
    assert [e["id"] for e in seen[:2]] == [second, first]
    assert len(seen) == 3


def event_at(event_id: int) -> Event:
    return Event(event_id, EventKind.ORDER_UPDATED, {}, T0)


def test_outbox_cursor_when_a_lower_id_commits_later_then_delivered_once_and_low_moves() -> None:
    cursor = OutboxCursor(6, hole_wait_s=5)

    assert [e.event_id for e in cursor.take([event_at(8)], now=0)] == [8]
    cursor.settle(now=1)
    assert cursor.low == 6  # 7 may still commit
    assert [e.event_id for e in cursor.take([event_at(7), event_at(8)], now=2)] == [7]
    cursor.settle(now=2)
    assert cursor.low == 8


def test_outbox_cursor_when_a_hole_stays_past_its_wait_then_given_up() -> None:
    cursor = OutboxCursor(6, hole_wait_s=5)
    cursor.take([event_at(8), event_at(9)], now=0)

    cursor.settle(now=4.9)
    assert cursor.low == 6
    cursor.settle(now=5)
    assert cursor.low == 9
    assert cursor.take([event_at(9), event_at(10)], now=6) == [event_at(10)]
