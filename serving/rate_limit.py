"""Per-token rate limits (settings.api_rate_limit, in the `limits` notation), moving windows.

With settings.redis_url the counts live in Redis, shared by every worker and every API process;
the calls are `limits.aio` (redis-py's asyncio client), so no round trip blocks the event loop.
Without it, each process counts in its own memory (N workers allow N times the rate).
Redis configured but not answering: the counts fall back to memory (one warning per outage)
and Redis is tried again after `retry_redis_s`; a rate limit never turns into a 5xx.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindow
from limits.errors import StorageError
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from limits.util import WindowStats
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

KEY_PREFIX = "tradeflow-rate"
RETRY_REDIS_S = 30.0
# A Redis that hangs must not hold a request for long: past this, memory takes over.
REDIS_TIMEOUT_S = 0.5
# What a broken or unreachable Redis raises through limits' async redis-py bridge.
REDIS_FAILURES: tuple[type[BaseException], ...] = (
    StorageError,
    RedisError,
    OSError,
    asyncio.TimeoutError,
)


class _Backend(Protocol):
    async def hit(self, item: RateLimitItem, key: str) -> bool: ...

    async def stats(self, item: RateLimitItem, key: str) -> WindowStats: ...


class _Memory:
    """This process's counts. The synchronous limiter: a hit is a few microseconds of
    arithmetic under a lock, with no event loop of its own to outlive."""

    def __init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def hit(self, item: RateLimitItem, key: str) -> bool:
        return self._limiter.hit(item, key)

    async def stats(self, item: RateLimitItem, key: str) -> WindowStats:
        return self._limiter.get_window_stats(item, key)


class _Redis:
    """Counts in Redis. redis-py's asyncio connections belong to the event loop that opened
    them, so the client is built on first use in each loop (one per worker in production)."""

    def __init__(self, url: str, key_prefix: str) -> None:
        self._url, self._prefix = async_url(url), key_prefix
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limiter: AsyncMovingWindow | None = None

    def _current(self) -> AsyncMovingWindow:
        loop = asyncio.get_running_loop()
        if self._limiter is None or loop is not self._loop:
            storage = RedisStorage(
                self._url,
                wrap_exceptions=True,
                implementation="redispy",
                key_prefix=self._prefix,
                socket_connect_timeout=REDIS_TIMEOUT_S,
                socket_timeout=REDIS_TIMEOUT_S,
                # One immediate retry (a connection Redis closed on restart), not redis-py's
                # default of three with backoff of up to seconds while the request waits.
                retry=Retry(NoBackoff(), 1),
            )
            self._loop, self._limiter = loop, AsyncMovingWindow(storage)
        return self._limiter

    async def hit(self, item: RateLimitItem, key: str) -> bool:
        return await self._current().hit(item, key)

    async def stats(self, item: RateLimitItem, key: str) -> WindowStats:
        return await self._current().get_window_stats(item, key)


def async_url(url: str) -> str:
    """settings.redis_url (redis://, rediss://, unix://) as limits' asyncio storage names it."""
    if url.startswith("unix://"):
        return "async+redis+unix://" + url.removeprefix("unix://")
    return "async+" + url


class TokenRateLimiter:
    """`await limiter.hit(token_id)`: None when allowed, else the seconds to wait (Retry-After)."""

    def __init__(
        self,
        rate: str,
        redis_url: str | None = None,
        key_prefix: str = KEY_PREFIX,
        retry_redis_s: float = RETRY_REDIS_S,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._items: Sequence[RateLimitItem] = parse_many(rate)
        self._memory = _Memory()
        self._redis = None if redis_url is None else _Redis(redis_url, key_prefix)
        self._redis_url = redis_url
        self._retry_redis_s, self._timer = retry_redis_s, timer
        self._redis_down_until: float | None = None  # set while counting in memory instead

    @property
    def shared(self) -> bool:
        """Whether the counts are Redis's now (False: this process's memory)."""
        return self._redis is not None and self._redis_down_until is None

    async def hit(self, token_id: str) -> int | None:
        key = f"token/{token_id}"
        redis = self._redis_now()
        if redis is not None:
            try:
                wait = await _hit_all(redis, self._items, key)
            except REDIS_FAILURES as exc:
                self._redis_failed(exc)
            else:
                if self._redis_down_until is not None:
                    log.warning("rate limits counted in Redis again")
                    self._redis_down_until = None
                return wait
        return await _hit_all(self._memory, self._items, key)

    def _redis_now(self) -> _Redis | None:
        if self._redis is None:
            return None
        if self._redis_down_until is not None and self._timer() < self._redis_down_until:
            return None
        return self._redis

    def _redis_failed(self, exc: BaseException) -> None:
        if self._redis_down_until is None:  # once per outage, not once per request
            log.warning(
                "rate limits counted in this process's memory: Redis at %s failed (%s: %s); "
                "trying it again every %.0f s",
                _without_password(self._redis_url or ""),
                type(exc).__name__,
                exc,
                self._retry_redis_s,
            )
        self._redis_down_until = self._timer() + self._retry_redis_s


async def _hit_all(backend: _Backend, items: Sequence[RateLimitItem], key: str) -> int | None:
    """Hit every window; the wait until the latest refusing one lets a request through."""
    waits = [
        _seconds_until(await backend.stats(item, key))
        for item in items
        if not await backend.hit(item, key)
    ]
    return max(waits) if waits else None


def _seconds_until(stats: WindowStats) -> int:
    # Whole seconds, rounded up (Retry-After has no fractions); at least one.
    return max(1, math.ceil(stats.reset_time - time.time()))


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}"
