"""Read answers (health, the safety status, positions, and the listings of orders, trades and
decisions), kept per process for a moment and given again while nothing has changed: a busy
dashboard or a load test asks for the same page over and over, and reading and building 50
orders' JSON costs many times what checking for news does.

"Nothing has changed" is known without reading a table (`Api.news_version`,
infra.ledger.listen):
- on PostgreSQL, from the outbox's notifications, counted on a LISTEN connection. Every store
  writes an event in the same transaction as a change to an order, a fill, a position, a
  decision or a safety control (infra/ledger/news.py), whichever process writes it, and
  PostgreSQL notifies at commit. While that connection is down nothing is kept.
- on SQLite, from the file's data version, which moves on with any commit by any connection.
- in both, a writing request to this process counts at once (WritesTouchNews, below), before
  the notification of its own write comes back.
A kept answer is never given once `max_age_s` old, counted from its read. That age bounds what
changes without news on PostgreSQL: a new candle (a position's mark), the reconciliation and
operator controls, a refused or repeated safety request (its count or row in the status), a
breaker's cooldown running out, a send being claimed (submit_attempts of an order still NEW);
all show within `max_age_s`, everything else as soon as its notification arrives. A LISTEN
connection cut without a word is found by a ping within seconds (OutboxWatch); until then it
too is bounded by `max_age_s`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.deps import Api, api_of


@dataclass(frozen=True, slots=True)
class _Kept:
    version: int
    at: float
    body: bytes


class PageCache:
    def __init__(
        self,
        max_age_s: float = 1.0,
        size: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age_s, self.size, self._clock = max_age_s, size, clock
        self._kept: OrderedDict[Hashable, _Kept] = OrderedDict()
        self._lock = threading.Lock()  # PostgreSQL reads run on threads
        # Answers being built, on the event loop: one build per key and version at a time.
        self._building: dict[tuple[Hashable, int], asyncio.Future[bytes]] = {}

    def now(self) -> float:
        return self._clock()

    async def built(
        self, key: Hashable, version: int, build: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        """`build`'s answer, kept; requests for the same key and version that come while it
        is being built wait for it instead of building their own: after news, the requests
        in flight would otherwise all read the ledger at once. On the event loop only."""
        flight = (key, version)
        pending = self._building.get(flight)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this request was cancelled, not the build
        return await self._build(flight, build)

    async def _build(
        self, flight: tuple[Hashable, int], build: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)
        self._building[flight] = future
        try:
            read_at = self.now()
            body = await build()
            self.put(*flight, body, at=read_at)
            future.set_result(body)
            return body
        except asyncio.CancelledError:
            future.cancel()  # its waiters build their own
            raise
        except BaseException as exc:
            future.set_exception(exc)  # the same request fails the same way for its waiters
            raise
        finally:
            del self._building[flight]

    def get(self, key: Hashable, version: int) -> bytes | None:
        """The answer kept for `key`, if it was built at this newest event id and is young."""
        with self._lock:
            kept = self._kept.get(key)
            if kept is None:
                return None
            if kept.version != version or self._clock() - kept.at >= self.max_age_s:
                del self._kept[key]
                return None
            self._kept.move_to_end(key)
            return kept.body

    def put(self, key: Hashable, version: int, body: bytes, at: float | None = None) -> None:
        """Keep `body`, read at `at` (this cache's clock; now when not given): its age counts
        from the read, so a slow build does not stretch how long it is given."""
        with self._lock:
            self._kept[key] = _Kept(version, self._clock() if at is None else at, body)
            self._kept.move_to_end(key)
            while len(self._kept) > self.size:  # the least recently asked for goes first
                self._kept.popitem(last=False)


def _retrieved(future: asyncio.Future[bytes]) -> None:
    """Mark a failed build's exception as seen (its builder raised it already)."""
    if not future.cancelled():
        future.exception()


def page_cache(request: Request) -> PageCache:
    """The app's cache of read answers, made on first use."""
    state = request.app.state
    cache: PageCache | None = getattr(state, "page_cache", None)
    if cache is None:
        cache = state.page_cache = PageCache()
    return cache


Build = Callable[[], dict[str, Any]]


def _encoded(build: Build) -> bytes:
    return json.dumps(build(), separators=(",", ":"), default=str).encode()


async def kept_answer(request: Request, key: Hashable, build: Build) -> bytes:
    """The JSON body `build` makes (it reads the ledger), or the one kept for `key` while
    nothing has changed; a kept answer is given on the event loop, without a thread or a read.
    While the news cannot be known (the watch is down) every answer is built."""
    api = api_of(request)
    version = api.news_version()  # taken first: what is read after is at least as new
    if version is None:
        return await api.read(_encoded, build)
    cache = page_cache(request)
    body = cache.get(key, version)
    if body is None:
        body = await cache.built(key, version, lambda: api.read(_encoded, build))
    return body


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class WritesTouchNews:
    """Pure ASGI: a request that may write (any method but GET, HEAD, OPTIONS) counts as news
    of this process's own (`Api.wrote`) as its answer starts, after the handler's commit and
    before its client can ask again, so this process never answers from before its own write.
    Other processes hear of it by the write's notification."""

    def __init__(self, app: ASGIApp, api: Api) -> None:
        self.app, self.api = app, api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.api.wrote()
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.api.wrote()  # also when no answer started (a handler failed mid-write)
