"""Push over the WebSocket `/api/v1/ws`: one hub per API process follows the ledger's outbox and
fans its events out to the clients subscribed to their channels.

Protocol (JSON text messages):
- Connect with a token of scope `read`: `Authorization: Bearer tf_…`, or `?token=tf_…` (a
  browser cannot set headers on a WebSocket). Without one the handshake is refused with HTTP
  401 (403 for a token without the scope) before any WebSocket exists.
- Client -> server: `{"op": "subscribe", "channels": ["orders", "positions"]}` and
  `{"op": "unsubscribe", "channels": [...]}`. Channels: orders, positions, decisions, safety,
  metrics. Answers: `{"type": "subscribed", "channels": [every channel now subscribed]}`;
  `{"type": "unsubscribed", "channels": [those asked], "subscribed": [those left]}`.
- Server -> client: `{"type": "event", "id", "channel", "kind", "correlation_id",
  "created_at", "data"}` (core.events.Event.as_json) for each event of a subscribed channel,
  in the order the ledger committed them; `{"type": "heartbeat", "time": ISO 8601}` every
  TRADEFLOW_WS_HEARTBEAT_S seconds to every client. The `metrics` channel gets a
  `metrics.updated` snapshot of the trading counts when subscribed to and every
  METRICS_EVERY_S seconds after (id 0: it is computed, not read from the outbox).
- A bad message (not JSON, an unknown op or channel, a missing field) is answered
  `{"type": "error", "detail": "…"}` (an unknown channel's names the valid ones) and the
  connection stays open; after MAX_BAD_MESSAGES of them it is closed with 1008.
- A client is only sent what happens after it subscribed; the REST resources hold the rest.
- A client whose queue (TRADEFLOW_WS_QUEUE_SIZE messages not yet sent) is full is dropped:
  closed with 4008 "slow consumer" once it reads what was already on its way (or cut after
  DROP_GRACE_S). The hub never waits for a client: a slow one costs the others nothing.

Where events come from: another process (a flow worker) writes an event in the transaction of
the change it reports (infra.ledger.events). On PostgreSQL its commit NOTIFYs the hub's LISTEN
connection, which wakes it at once, with a slow safety poll behind; on SQLite the hub polls
every POLL_S seconds, an indexed read of the outbox's primary key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from fastapi import FastAPI, WebSocket
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.websockets import WebSocketDisconnect

from core.errors import TradeflowError
from core.events import Channel, Event, EventKind
from core.records import TradingCounts
from core.risk.state import effective_state
from services import bootstrap
from serving.deps import Api

log = logging.getLogger(__name__)

# SQLite: how often the outbox is read while a client is connected (one indexed read of the
# newest ids; none while nobody listens): the delivery latency is about half of it.
POLL_S = 0.05
SAFETY_POLL_S = 2.0  # PostgreSQL: read even without a notification (one lost on a reconnect)
METRICS_EVERY_S = 5.0
BATCH = 500  # events read at a time
# On PostgreSQL an event's id is taken when its transaction writes it, and it is readable when
# that transaction commits: a later id can be read first. A missing id below one already read
# is waited for this long (its transaction may still commit), then given up: a rolled-back
# transaction leaves a hole in the sequence for good.
HOLE_WAIT_S = 5.0
RETRY_S = 1.0  # after a failed read (the database does not answer)
DROP_GRACE_S = 30.0  # a dropped client's time to take what was sent, before its close
MAX_BAD_MESSAGES = 10
MAX_MESSAGE_CHARS = 4096
SLOW_CONSUMER = 4008  # an application close code (4000-4999): the client did not keep up
POLICY_VIOLATION = 1008
CHANNELS = ", ".join(c.value for c in Channel)


class Waker(Protocol):
    """Wakes the hub when an event is committed (infra.ledger.listen.OutboxListener)."""

    async def wait(self, timeout: float) -> bool: ...

    async def aclose(self) -> None: ...


# Close code for a client whose token stopped being valid while it was connected (4000-4999
# are the application's; 4401 reads as HTTP's 401).
TOKEN_GONE = 4401


@dataclass(eq=False)
class Subscriber:
    """One connected client: what it asked for and what waits to be sent to it."""

    queue: asyncio.Queue[str]
    peer: str = "?"  # host:port, for the logs
    channels: set[Channel] = field(default_factory=set)
    dropped: asyncio.Event = field(default_factory=asyncio.Event)


class OutboxCursor:
    """How far the hub has read the outbox: every id up to `low` was delivered or given up;
    `seen` holds those above it already delivered, `holes` the ids missing below them."""

    def __init__(self, low: int, hole_wait_s: float = HOLE_WAIT_S) -> None:
        self.low = low
        self._seen: set[int] = set()
        self._holes: dict[int, float] = {}  # id -> when first missed (monotonic seconds)
        self._hole_wait_s = hole_wait_s

    def take(self, events: Sequence[Event], now: float) -> list[Event]:
        """The events of a read (`after(low)`, id order) not delivered yet."""
        fresh = [e for e in events if e.event_id > self.low and e.event_id not in self._seen]
        for event in fresh:
            self._seen.add(event.event_id)
            self._holes.pop(event.event_id, None)
        if fresh:
            for missing in range(self.low + 1, fresh[-1].event_id):
                if missing not in self._seen:
                    self._holes.setdefault(missing, now)
        return fresh

    def settle(self, now: float) -> None:
        """Move `low` up over delivered ids and holes waited for long enough."""
        while True:
            nxt = self.low + 1
            if nxt in self._seen:
                self._seen.discard(nxt)
            elif nxt in self._holes and now - self._holes[nxt] >= self._hole_wait_s:
                del self._holes[nxt]
            else:
                return
            self.low = nxt


def event_text(event: Event) -> str:
    return json.dumps({"type": "event", **event.as_json()}, separators=(",", ":"), default=str)


def metrics_payload(counts: TradingCounts) -> dict[str, Any]:
    """The `metrics.updated` snapshot: the trading state and what the ledger counts."""
    state, cause, detail = effective_state(counts.flags)
    kill = counts.kill_switch
    return {
        "trading_state": state.value,
        "halt_cause": None if cause is None else cause.value,
        "detail": detail,
        "kill_switch": {
            "active": kill.active,
            "reason": kill.reason,
            "changed_at": None if kill.changed_at is None else kill.changed_at.isoformat(),
        },
        "breaker_reason": counts.flags.breaker_reason,
        "orders": dict(counts.orders),
        "decisions": dict(counts.decisions),
        "denials": dict(counts.denials),
        "fills": counts.fills,
        "positions": dict(counts.positions),
    }


class Hub:
    """Follows the outbox and hands each client its events; never waits for a client."""

    def __init__(self, api: Api, waker: Waker | None) -> None:
        self._api = api
        self._waker = waker
        self._queue_size = api.settings.ws_queue_size
        self._heartbeat_s = api.settings.ws_heartbeat_s
        self._subscribers: set[Subscriber] = set()
        self._cursor: OutboxCursor | None = None  # None while no client is connected
        self._joined = asyncio.Event()
        self._starting = asyncio.Lock()

    # -- clients ---------------------------------------------------------------------------
    @asynccontextmanager
    async def joined(self, peer: str = "?") -> AsyncIterator[Subscriber]:
        """A new client, for the block. The hub follows the outbox only while a client is
        connected (an API without clients reads nothing); it starts from the outbox's newest
        event before the client is added, so a client gets every event committed after its
        subscription's acknowledgement."""
        subscriber = Subscriber(asyncio.Queue(self._queue_size), peer)
        async with self._starting:
            if self._cursor is None:
                try:
                    self._cursor = OutboxCursor(await self._last_id())
                except TradeflowError as exc:  # the follower starts it once the ledger answers
                    log.warning("WebSocket client joined while the ledger is down: %s", exc)
            self._subscribers.add(subscriber)
            self._joined.set()
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)

    async def _last_id(self) -> int:
        return await self._api.read(self._api.ledger.events.last_id)

    def send(self, subscriber: Subscriber, message: dict[str, Any]) -> None:
        self.send_text(subscriber, json.dumps(message, separators=(",", ":"), default=str))

    def send_text(self, subscriber: Subscriber, text: str) -> None:
        """Queue `text` for one client, or drop the client when its queue is full."""
        if subscriber.dropped.is_set():
            return
        try:
            subscriber.queue.put_nowait(text)
        except asyncio.QueueFull:
            self._subscribers.discard(subscriber)
            subscriber.dropped.set()
            log.warning(
                "WebSocket client %s dropped: %d messages unsent", subscriber.peer, self._queue_size
            )

    async def metrics_text(self) -> str:
        now = self._api.clock.now()
        overview, account = self._api.ledger.overview, self._api.settings.account
        counts = await self._api.read(overview.trading_counts, now, account)
        return event_text(Event(0, EventKind.METRICS_UPDATED, metrics_payload(counts), now))

    # -- the loops -------------------------------------------------------------------------
    async def run(self) -> None:
        """Follow the outbox, beat and publish metrics until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(_keep("outbox", self._follow))
            group.create_task(_keep("heartbeat", self._beat))
            group.create_task(_keep("metrics", self._publish_metrics))

    async def aclose(self) -> None:
        if self._waker is not None:
            await self._waker.aclose()

    async def _follow(self) -> None:
        if not self._subscribers:
            await self._idle()
            return
        if self._cursor is None:
            self._cursor = OutboxCursor(await self._last_id())
        await self._drain(self._cursor)
        if self._waker is None:
            await asyncio.sleep(POLL_S)
        else:
            await self._waker.wait(SAFETY_POLL_S)

    async def _idle(self) -> None:
        """Forget the cursor and the LISTEN connection until a client joins."""
        self._cursor = None
        if self._waker is not None:
            await self._waker.aclose()
        self._joined.clear()
        if not self._subscribers:  # one may have joined during aclose()
            await self._joined.wait()

    async def _drain(self, cursor: OutboxCursor) -> None:
        start = cursor.low
        while True:
            batch = await self._api.read(self._api.ledger.events.after, start, BATCH)
            for event in cursor.take(batch, time.monotonic()):
                self._fan_out(event)
                await asyncio.sleep(0)  # the clients' writers send before the next event
            if len(batch) < BATCH:
                break
            start = batch[-1].event_id
        cursor.settle(time.monotonic())

    def _fan_out(self, event: Event) -> None:
        text = event_text(event)  # once, whatever the number of clients
        for subscriber in list(self._subscribers):
            if event.channel in subscriber.channels:
                self.send_text(subscriber, text)

    async def _beat(self) -> None:
        await asyncio.sleep(self._heartbeat_s)
        message = {"type": "heartbeat", "time": self._api.clock.now().isoformat()}
        text = json.dumps(message, separators=(",", ":"))
        for subscriber in list(self._subscribers):
            self.send_text(subscriber, text)

    async def _publish_metrics(self) -> None:
        await asyncio.sleep(METRICS_EVERY_S)
        if self._watching(Channel.METRICS):
            text = await self.metrics_text()
            for subscriber in self._watching(Channel.METRICS):
                self.send_text(subscriber, text)

    def _watching(self, channel: Channel) -> list[Subscriber]:
        return [s for s in self._subscribers if channel in s.channels]


async def _keep(name: str, step: Callable[[], Awaitable[None]]) -> None:
    """Run `step` again and again. The push must outlive any one failure: a database that
    does not answer is logged and waited out; anything else is logged with its traceback
    (a bug, but one that must not end every client's push for the process's lifetime)."""
    while True:
        try:
            await step()
        except TradeflowError as exc:
            log.warning("WebSocket %s: %s", name, exc)
            await asyncio.sleep(RETRY_S)
        except Exception:
            log.exception("WebSocket %s failed; going on", name)
            await asyncio.sleep(RETRY_S)


@asynccontextmanager
async def hub_running(app: FastAPI) -> AsyncIterator[Hub]:
    """The app's hub, running for as long as the block (the app's lifespan)."""
    api: Api = app.state.api
    hub = Hub(api, bootstrap.outbox_listener(api.settings))
    task = asyncio.create_task(hub.run(), name="websocket-hub")
    app.state.hub = hub
    try:
        yield hub
    finally:
        app.state.hub = None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await hub.aclose()


def hub_of(app: FastAPI) -> Hub | None:
    hub: Hub | None = getattr(app.state, "hub", None)
    return hub


# -- one client's session -------------------------------------------------------------------
class Op(StrEnum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    op: Op
    channels: tuple[str, ...] = Field(min_length=1, max_length=16)


class BadMessage(ValueError):
    """A client message the protocol does not allow; its text is what the client is told."""


def parse(text: str | None) -> tuple[Op, frozenset[Channel]]:
    if text is None:
        raise BadMessage("send JSON text messages, not binary ones")
    if len(text) > MAX_MESSAGE_CHARS:
        raise BadMessage(f"message longer than {MAX_MESSAGE_CHARS} characters")
    try:
        command = Command.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise BadMessage(f"{where}: {first['msg']}") from None
    unknown = [c for c in command.channels if c not in Channel._value2member_map_]
    if unknown:
        raise BadMessage(f"unknown channel(s) {', '.join(unknown)}: the channels are {CHANNELS}")
    return command.op, frozenset(Channel(c) for c in command.channels)


def answer(subscriber: Subscriber, op: Op, channels: Iterable[Channel]) -> dict[str, Any]:
    """Apply a command to the client's subscriptions; the acknowledgement."""
    asked = sorted(channels)
    if op is Op.SUBSCRIBE:
        subscriber.channels.update(asked)
        return {"type": "subscribed", "channels": sorted(subscriber.channels)}
    subscriber.channels.difference_update(asked)
    return {"type": "unsubscribed", "channels": asked, "subscribed": sorted(subscriber.channels)}


async def serve(
    ws: WebSocket, hub: Hub, token_gone: Callable[[], Awaitable[None]] | None = None
) -> None:
    """One accepted client's session, until it leaves, breaks the protocol, is dropped, or
    `token_gone` returns (its token was revoked or expired: closed with 4401)."""
    peer = f"{ws.client.host}:{ws.client.port}" if ws.client else "?"
    async with hub.joined(peer) as subscriber:
        reader = asyncio.create_task(_listen(ws, hub, subscriber))
        writer = asyncio.create_task(_write(ws, subscriber))
        dropped = asyncio.create_task(subscriber.dropped.wait())
        gone = asyncio.create_task(token_gone() if token_gone else asyncio.Event().wait())
        tasks = {reader, writer, dropped, gone}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    if dropped in done:
        await _close(ws, SLOW_CONSUMER, "slow consumer")
    elif gone in done:
        await _close(ws, TOKEN_GONE, "token revoked or expired")
    elif reader in done and _result(reader) is True:
        await _close(ws, POLICY_VIOLATION, "too many bad messages", subscriber.queue)


def _result(task: asyncio.Task[bool]) -> bool | None:
    """A finished task's result; None if it failed (the client went away mid-read)."""
    return None if task.cancelled() or task.exception() is not None else task.result()


async def _listen(ws: WebSocket, hub: Hub, subscriber: Subscriber) -> bool:
    """Answer the client's commands; True when it sent too many bad ones, False when it
    left."""
    bad = 0
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return False
        bad += not await _handle(hub, subscriber, message.get("text"))
        if bad >= MAX_BAD_MESSAGES:
            return True
        # The writer sends the answer before the next message is read: a client sending a
        # burst of commands must not fill its own queue and be taken for a slow one.
        await asyncio.sleep(0)


async def _handle(hub: Hub, subscriber: Subscriber, text: str | None) -> bool:
    """Apply one command and queue its answer; False for a bad message (answered with an
    error)."""
    try:
        op, channels = parse(text)
    except BadMessage as exc:
        hub.send(subscriber, {"type": "error", "detail": str(exc)})
        return False
    fresh_metrics = op is Op.SUBSCRIBE and Channel.METRICS in channels - subscriber.channels
    hub.send(subscriber, answer(subscriber, op, channels))
    if fresh_metrics:
        with contextlib.suppress(TradeflowError):  # the periodic one follows
            hub.send_text(subscriber, await hub.metrics_text())
    return True


async def _write(ws: WebSocket, subscriber: Subscriber) -> None:
    while True:
        await ws.send_text(await subscriber.queue.get())


async def _close(
    ws: WebSocket, code: int, reason: str, unsent: asyncio.Queue[str] | None = None
) -> None:
    """Send what is still queued in `unsent` (the answers to the client's last messages),
    then close once the client has read what was sent; give up after DROP_GRACE_S (the
    server then cuts the connection) or if the client has gone meanwhile."""
    with contextlib.suppress(TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
        async with asyncio.timeout(DROP_GRACE_S):
            while unsent is not None and not unsent.empty():
                await ws.send_text(unsent.get_nowait())
            await ws.close(code, reason)
