"""What every route needs, built once per app by services.bootstrap and kept on the app's
state: FastAPI resolves a Depends() on every request (tens of microseconds each), which the
hot read endpoints cannot afford, so routes read it from the request instead."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import anyio
from fastapi import Request

from core.clock import Clock
from core.ports import Ledger
from services.bootstrap import Settings
from services.safety_requests import SafetyDesk
from serving.priority import SafetyFirst

T = TypeVar("T")


class News(Protocol):
    """A generation that moves on whenever the ledger may have changed (infra.ledger.listen's
    OutboxWatch and FileWatch)."""

    @property
    def generation(self) -> int | None: ...

    def touch(self) -> None: ...

    async def run(self) -> None:
        """Keep the count until cancelled."""


@dataclass(frozen=True, slots=True)
class Api:
    settings: Settings
    ledger: Ledger
    desk: SafetyDesk
    clock: Clock
    # PostgreSQL reads for health and status run on at most this many threads: under load,
    # many Python threads fighting for the GIL answer fewer requests than a few taking turns.
    reads: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(4))
    # What tells that nothing has committed since an answer was built (serving/page_cache.py).
    news: News | None = None
    # Signed safety writes go first (serving/priority.py).
    first: SafetyFirst = field(default_factory=SafetyFirst)

    async def read(self, fn: Callable[..., T], *args: object) -> T:
        """Run one of the read models' queries. On SQLite it runs right here: a handful of
        indexed reads of a local file in WAL mode (they never wait for a writer) take about
        0.1 ms, less than the hop to a thread, and measured under load they answer about twice
        the requests (bench/api.py). On PostgreSQL (network round trips) it runs on the read
        threads, off the event loop. Writes (the kill switch) always run on the thread pool."""
        if self.inline_reads:
            return fn(*args)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.reads)

    def news_version(self) -> int | None:
        """A number that moves on whenever anything a read shows may have changed, known
        without reading a table; None when it cannot be known (the watch is down, or an
        in-memory ledger)."""
        return None if self.news is None else self.news.generation

    def wrote(self) -> None:
        """This process changed the ledger: its next read must not be an answer kept from
        before, even if the change's notification has not come back yet."""
        if self.news is not None:
            self.news.touch()

    @property
    def inline_reads(self) -> bool:
        return self.settings.ledger_url.startswith("sqlite")


def api_of(request: Request) -> Api:
    api: Api = request.app.state.api
    return api


async def bounded_body(request: Request, limit: int) -> bytes | None:
    """At most `limit` bytes of body; None, not read on, when it is larger (announced or
    streamed): no caller can make the server hold or parse much."""
    announced = request.headers.get("content-length", "0")
    if announced.isascii() and announced.isdigit() and int(announced) > limit:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return body
