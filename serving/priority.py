"""Signed safety writes go first: while one (the kill switch, a breaker reset) is under way in
this process, requests that arrive wait at the door until it is done; and the process is set so
that a thread's wait for the GIL, or for the garbage collector, stays short.

Why: the write runs on a thread, and each of its database round trips gives the GIL up and must
get it back from the event loop, which under a flood of reads never idles; the reads answered
from memory (serving/page_cache.py) keep it busiest. Held at the door, new requests cost the
loop nothing, so the write has the GIL nearly to itself and HALTED is durable in milliseconds
(bench/api.py measures it under load). Requests already inside finish as usual, and the wait
lasts one write: a few milliseconds, more only while the database is slow to answer it. What the
request does after its write (cancelling orders at the broker, alerts) does not hold the door.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
from collections.abc import AsyncIterator, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

# How long a thread may hold the GIL while another waits for it (Python's default is 5 ms). The
# write's thread gives the GIL up at every database round trip and waits to get it back from
# the busy event loop: with a dozen statements, 5 ms turns added up to tens of milliseconds.
GIL_TURN_S = 0.0005
SAFETY_PREFIX = "/api/v1/safety/"  # never held: a second kill switch must not wait for the first


class SafetyFirst:
    """How many signed safety writes are under way, and an event set when there are none."""

    def __init__(self) -> None:
        self._writing = 0
        self._clear = asyncio.Event()
        self._clear.set()

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[Callable[[], None]]:
        """Hold the door for the block, or until the callable it yields is called (from any
        thread) once the write is in the ledger: what the request does after that (cancel
        orders at the broker, send an alert) need not go first."""
        loop = asyncio.get_running_loop()
        done = False

        def open_door() -> None:  # on the loop, once
            nonlocal done
            if not done:
                done = True
                self._writing -= 1
                if not self._writing:
                    self._clear.set()

        self._writing += 1
        self._clear.clear()
        try:
            yield lambda: loop.call_soon_threadsafe(open_door)
        finally:
            open_door()

    async def wait(self) -> None:
        if self._writing:
            await self._clear.wait()


class SafetyFirstGate:
    """Pure ASGI: HTTP requests and WebSocket handshakes outside the safety routes wait while
    a signed safety write is under way."""

    def __init__(self, app: ASGIApp, first: SafetyFirst) -> None:
        self.app, self.first = app, first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not scope["path"].startswith(SAFETY_PREFIX):
            await self.first.wait()
        await self.app(scope, receive, send)


@contextlib.asynccontextmanager
async def safety_first_process() -> AsyncIterator[None]:
    """For as long as the app runs: short GIL turns (GIL_TURN_S), and what the app built at
    start-up (modules, routes, the ledger's mappers) frozen out of the garbage collector's
    sight. A full collection otherwise walks all of it, and one fell inside a kill switch's
    write in bench/api.py (190 ms, against 15 ms for the others). Both are process settings:
    they are put back when the app stops (tests run many apps in one process)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(GIL_TURN_S)
    gc.freeze()  # no collection first: it would cost every test's app a full one
    try:
        yield
    finally:
        gc.unfreeze()
        sys.setswitchinterval(before)
