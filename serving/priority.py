"""Signed safety writes go first: while a verified one (the kill switch, a breaker reset) is
under way in one of this host's API workers, requests that arrive at any of them wait at the
door until it is in the ledger (at most MAX_HOLD_S); a refused request holds nobody; and the
process is set so that a thread's wait for the GIL, or for the garbage collector, stays short.

Why: the write runs on a thread, and each of its database round trips gives the GIL up and must
get it back from the event loop, which under a flood of reads never idles; the reads answered
from memory (serving/page_cache.py) keep it busiest. Held at the door, new requests cost the
loop nothing, so the write has the GIL nearly to itself and HALTED is durable in milliseconds
(bench/api.py measures it under load). Requests already inside finish as usual, and the wait
lasts one write: a few milliseconds, more only while the database is slow to answer it. What the
request does after its write (cancelling orders at the broker, alerts) does not hold the door.
The other workers on the host are held too (HostDoor): left running flat out, they and their
load took the cores from the write and its database, and its p99 doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from services.collector import frozen_start_up

# How long a thread may hold the GIL while another waits for it (Python's default is 5 ms). The
# write's thread gives the GIL up at every database round trip and waits to get it back from
# the busy event loop: with a dozen statements, 5 ms turns added up to tens of milliseconds.
GIL_TURN_S = 0.0005
# The longest a request waits at the door: a write is a few ms, tens under heavy load.
MAX_HOLD_S = 0.25
SAFETY_PREFIX = "/api/v1/safety/"  # never held: a second kill switch must not wait for the first
HOST_POLL_S = 0.001  # how often a request held by another worker's write looks again

log = logging.getLogger(__name__)
_DEADLINE = struct.Struct("d")


class HostDoor:
    """The door shared by the API workers of one host: a writing worker stores "closed until"
    (time.monotonic(), which Linux counts for the whole host) in a small file they all map;
    the others' gates read it, a few hundred nanoseconds. Without the file (it cannot be made)
    each worker holds only its own requests. Two workers writing at once share the one
    deadline: the first to finish opens it for both (the second's hold is cut short, never
    made longer); a worker that dies mid-write leaves it closed until the deadline at most."""

    def __init__(self, path: Path) -> None:
        self._map: mmap.mmap | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a+b") as f:
                if f.seek(0, 2) < _DEADLINE.size:
                    f.write(b"\0" * _DEADLINE.size)
                    f.flush()
                self._map = mmap.mmap(f.fileno(), _DEADLINE.size)
        except OSError as exc:
            log.warning("the kill switch holds only this worker's requests: %s", exc)

    def close_until(self, deadline: float) -> None:
        if self._map is not None:
            _DEADLINE.pack_into(self._map, 0, deadline)

    def open(self) -> None:
        self.close_until(0.0)

    def closed_until(self) -> float:
        return 0.0 if self._map is None else float(_DEADLINE.unpack_from(self._map, 0)[0])


class SafetyFirst:
    """How many verified safety writes are under way, and what their waiters wait on."""

    def __init__(self, max_hold_s: float = MAX_HOLD_S, host: HostDoor | None = None) -> None:
        self.max_hold_s = max_hold_s
        self._host = host
        self._writing = 0
        # Made per round of writes, on the loop that runs them (an Event is bound to one).
        self._opened: asyncio.Event | None = None

    @contextlib.asynccontextmanager
    async def writing(
        self, on_written: Callable[[], None] = lambda: None
    ) -> AsyncIterator[Callable[[], None]]:
        """Hold the door for the block, or until the callable it yields is called (from any
        thread) once the write is in the ledger: what the request does after that (cancel
        orders at the broker, send an alert) need not go first. `on_written` runs on the loop
        when the door opens (the write's own news, before anyone can read)."""
        loop = asyncio.get_running_loop()
        done = False

        def open_door() -> None:  # on the loop, once
            nonlocal done
            if done:
                return
            done = True
            on_written()
            self._writing -= 1
            if not self._writing and self._opened is not None:
                self._opened.set()
                self._opened = None
                if self._host is not None:
                    self._host.open()

        if not self._writing:
            self._opened = asyncio.Event()
        if self._host is not None:
            self._host.close_until(time.monotonic() + self.max_hold_s)
        self._writing += 1
        try:
            yield lambda: loop.call_soon_threadsafe(open_door)
        finally:
            open_door()

    async def wait(self) -> None:
        """Until no write is under way, or max_hold_s at most: a write that takes longer (the
        database slow or unreachable) must not stall every other request with it."""
        opened = self._opened
        if opened is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(opened.wait(), self.max_hold_s)
            return
        if self._host is not None:
            await self._wait_for_host()

    async def _wait_for_host(self) -> None:
        """Another worker's write: looked at every HOST_POLL_S, never past its deadline (nor
        past max_hold_s from now, whatever the file says)."""
        assert self._host is not None
        now = time.monotonic()
        until = min(self._host.closed_until(), now + self.max_hold_s)
        while now < until:
            await asyncio.sleep(HOST_POLL_S)
            now = time.monotonic()
            until = min(self._host.closed_until(), until)


class SafetyFirstGate:
    """Pure ASGI: HTTP requests and WebSocket handshakes outside the safety routes wait while
    a signed safety write is under way."""

    def __init__(self, app: ASGIApp, first: SafetyFirst) -> None:
        self.app, self.first = app, first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not scope["path"].startswith(SAFETY_PREFIX):
            await self.first.wait()
        await self.app(scope, receive, send)


_process_lock = threading.Lock()
_apps_running = 0
_switch_interval_before = 0.0


@contextlib.asynccontextmanager
async def safety_first_process() -> AsyncIterator[None]:
    """For as long as an app runs in this process: short GIL turns (GIL_TURN_S), and what was
    built before (modules, routes, the ledger's mappers) frozen out of the garbage collector's
    sight. A full collection otherwise walks all of it, and one fell inside a kill switch's
    write in bench/api.py (190 ms, against 15 ms for the others). Both are the process's
    settings: set by the first app to start, put back by the last to stop (tests run many)."""
    global _apps_running, _switch_interval_before
    with _process_lock:
        if not _apps_running:
            _switch_interval_before = sys.getswitchinterval()
            sys.setswitchinterval(GIL_TURN_S)
        _apps_running += 1
    try:
        with frozen_start_up():  # no collection first: it would cost every test's app a full one
            yield
    finally:
        with _process_lock:
            _apps_running -= 1
            if not _apps_running:
                sys.setswitchinterval(_switch_interval_before)
