"""WebSocket fan-out: N clients subscribed to one channel of a running API, events published
into the ledger's outbox by this process (as a flow worker would publish them), and the
latency from the publishing commit to each client's receipt.

Used by bench/api.py on the API it already runs; on its own:
  .venv/bin/python -m bench.ws_fanout --port P --token T --database-url URL

Latency is read on one clock: this process writes the event (timed from before the write, so
the commit is included) and this process's clients receive it, both timed with perf_counter.
What it measures is the API's path, outbox -> hub -> each client's queue -> socket: on SQLite
the hub polls the outbox, on PostgreSQL a NOTIFY wakes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench.loadgen import percentile
from core.events import EventKind

CHANNEL = "safety"
KIND = EventKind.CIRCUIT_BREAKER  # a safety event no reader acts on: the bench is not news
READY_TIMEOUT_S = 30.0
DELIVERY_TIMEOUT_S = 10.0


@dataclass
class FanoutResult:
    clients: int
    events: int
    expected: int
    latencies_s: list[float] = field(default_factory=list)
    failure: str | None = None

    @property
    def delivered(self) -> int:
        return len(self.latencies_s)

    @property
    def p50_s(self) -> float:
        return percentile(self.latencies_s, 0.50)

    @property
    def p99_s(self) -> float:
        return percentile(self.latencies_s, 0.99)


class _Client:
    """One subscribed client, reading from before the first event is published: records when
    each event id arrives."""

    def __init__(self, ws: object) -> None:
        self.ws = ws
        self.arrived: dict[int, float] = {}

    async def read(self) -> None:
        while True:  # until cancelled
            raw = await self.ws.recv()  # type: ignore[attr-defined]
            message = json.loads(raw)
            if message.get("type") == "event":
                self.arrived.setdefault(int(message["id"]), time.perf_counter())

    def has(self, wanted: set[int]) -> bool:
        return wanted <= self.arrived.keys()


async def _connect(port: int, token: str) -> _Client:
    import websockets

    ws = await websockets.connect(f"ws://127.0.0.1:{port}/api/v1/ws?token={token}")
    await ws.send(json.dumps({"op": "subscribe", "channels": [CHANNEL]}))
    while True:  # up to the acknowledgement; heartbeats may come first
        message = json.loads(await asyncio.wait_for(ws.recv(), READY_TIMEOUT_S))
        if message.get("type") == "subscribed":
            return _Client(ws)
        if message.get("type") == "error":
            raise RuntimeError(f"subscription refused: {message}")


async def _publish(url: str, events: int, pause_s: float) -> dict[int, float]:
    from infra.ledger.ledger import open_ledger

    ledger = open_ledger(url)
    sent: dict[int, float] = {}
    for n in range(events):
        payload = {"bench": "ws_fanout", "n": n}
        # Timed from before the write: the figure includes the commit (conservative), and a
        # client can never seem to receive an event before it was sent.
        started = time.perf_counter()
        event_id = await asyncio.to_thread(
            ledger.events.publish, KIND, payload, datetime.now(UTC), None
        )
        sent[event_id] = started
        await asyncio.sleep(pause_s)
    return sent


async def _await_all(opened: list[_Client], wanted: set[int]) -> None:
    until = time.monotonic() + DELIVERY_TIMEOUT_S
    while time.monotonic() < until and not all(c.has(wanted) for c in opened):
        await asyncio.sleep(0.01)


async def fanout_async(
    port: int, token: str, url: str, clients: int, events: int, pause_s: float
) -> FanoutResult:
    result = FanoutResult(clients, events, clients * events)
    opened = list(await asyncio.gather(*(_connect(port, token) for _ in range(clients))))
    readers = [asyncio.ensure_future(c.read()) for c in opened]
    try:
        sent = await _publish(url, events, pause_s)
        await _await_all(opened, set(sent))
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await asyncio.gather(*(c.ws.close() for c in opened), return_exceptions=True)  # type: ignore[attr-defined]
    for client in opened:
        for event_id, at in client.arrived.items():
            if event_id in sent:
                result.latencies_s.append(max(0.0, at - sent[event_id]))
    if result.delivered < result.expected:
        result.failure = f"{result.expected - result.delivered} deliveries missing"
    return result


def fanout(
    port: int, token: str, url: str, clients: int = 100, events: int = 30, pause_s: float = 0.05
) -> FanoutResult:
    return asyncio.run(fanout_async(port, token, url, clients, events, pause_s))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--events", type=int, default=30)
    args = parser.parse_args()
    r = fanout(args.port, args.token, args.database_url, args.clients, args.events)
    print(f"{r.clients} clients x {r.events} events: {r.delivered}/{r.expected} delivered, "
          f"p50 {r.p50_s * 1000:.1f} ms, p99 {r.p99_s * 1000:.1f} ms"
          + (f" ({r.failure})" if r.failure else ""))  # fmt: skip


if __name__ == "__main__":
    main()
