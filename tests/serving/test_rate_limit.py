"""Per-token rate limits: 429 with Retry-After past the limit, in memory and on the real Redis at
127.0.0.1:6379 (shared by every limiter, as by every worker); a Redis that stops answering
falls back to memory with one warning and is used again once it answers."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
import redis
from fastapi.testclient import TestClient

from core.auth import Scope, parse_token
from serving.auth import auth_of
from serving.rate_limit import TokenRateLimiter
from tests.serving.test_auth import probed
from tests.serving.tokens import bearer, issue_token

REDIS = "redis://127.0.0.1:6379/0"
DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens: refused at once
READ = "/api/v1/probe/read"


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own in the shared Redis, deleted afterwards."""
    prefix = f"tradeflow-test-{uuid.uuid4().hex}"
    yield prefix
    client = redis.Redis.from_url(REDIS)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def redis_keys(prefix: str) -> list[bytes]:
    client = redis.Redis.from_url(REDIS)
    try:
        return list(client.scan_iter(f"{prefix}*"))
    finally:
        client.close()


def limited_client(url: str, rate: str, redis_url: str | None, prefix: str) -> TestClient:
    client = probed(url, api_rate_limit=rate, redis_url=redis_url)
    app = client.app
    auth = auth_of(app)  # type: ignore[arg-type]
    limiter = TokenRateLimiter(rate, redis_url, key_prefix=prefix)
    app.state.auth = replace(auth, limiter=limiter)  # type: ignore[attr-defined]
    return client


def assert_refused(client: TestClient, token: str, window_s: int) -> None:
    r = client.get(READ, headers=bearer(token))
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= window_s
    assert r.json() == {"detail": f"rate limit exceeded: retry in {r.headers['retry-after']} s"}


@pytest.mark.parametrize("redis_url", [None, REDIS], ids=["memory", "redis"])
def test_route_when_past_token_rate_then_429_with_retry_after_other_tokens_unaffected(
    ledger_url: str, redis_url: str | None, prefix: str
) -> None:
    token, other = issue_token(ledger_url, Scope.READ), issue_token(ledger_url, Scope.READ)
    with limited_client(ledger_url, "3/minute", redis_url, prefix) as c:
        assert [c.get(READ, headers=bearer(token)).status_code for _ in range(3)] == [200] * 3
        assert_refused(c, token, 60)
        assert c.get(READ, headers=bearer(other)).status_code == 200
    assert bool(redis_keys(prefix)) is (redis_url is not None)  # counted where configured


def test_route_when_token_invalid_then_401_not_counted(ledger_url: str, prefix: str) -> None:
    token = issue_token(ledger_url, Scope.READ)
    forged = f"tf_{parse_token(token).token_id}_{'A' * 43}"
    with limited_client(ledger_url, "2/minute", None, prefix) as c:
        assert c.get(READ, headers=bearer(forged)).status_code == 401
        assert [c.get(READ, headers=bearer(token)).status_code for _ in range(3)] == [200, 200, 429]


def test_route_when_several_windows_then_tightest_refuses(ledger_url: str, prefix: str) -> None:
    token = issue_token(ledger_url, Scope.READ)
    with limited_client(ledger_url, "100/second;2/hour", None, prefix) as c:
        assert [c.get(READ, headers=bearer(token)).status_code for _ in range(2)] == [200, 200]
        assert_refused(c, token, 3600)


def test_route_when_websocket_past_rate_then_refused(ledger_url: str, prefix: str) -> None:
    from starlette.websockets import WebSocketDisconnect

    token = issue_token(ledger_url, Scope.READ)
    with limited_client(ledger_url, "1/minute", None, prefix) as c:
        with c.websocket_connect("/api/v1/probe/ws", headers=bearer(token)) as ws:
            ws.receive_json()
        with (
            pytest.raises(WebSocketDisconnect),
            c.websocket_connect("/api/v1/probe/ws", headers=bearer(token)) as ws,
        ):
            ws.receive_json()


async def hits(limiter: TokenRateLimiter, token_id: str, n: int) -> list[int | None]:
    return [await limiter.hit(token_id) for _ in range(n)]


def test_hit_when_two_limiters_on_redis_then_one_shared_count(prefix: str) -> None:
    async def run() -> tuple[list[int | None], list[int | None]]:
        worker_a = TokenRateLimiter("4/minute", REDIS, key_prefix=prefix)
        worker_b = TokenRateLimiter("4/minute", REDIS, key_prefix=prefix)
        return await hits(worker_a, "t1", 2), await hits(worker_b, "t1", 3)

    first, second = asyncio.run(run())

    assert first == [None, None]
    assert second[:2] == [None, None]
    assert second[2] is not None
    assert 1 <= second[2] <= 60


def test_hit_when_two_limiters_in_memory_then_each_counts_its_own() -> None:
    async def run() -> list[int | None]:
        worker_a = TokenRateLimiter("2/minute")
        worker_b = TokenRateLimiter("2/minute")
        return await hits(worker_a, "t1", 2) + await hits(worker_b, "t1", 3)

    assert asyncio.run(run()) == [None, None, None, None, pytest.approx(60, abs=1)]


def test_hit_when_redis_down_then_memory_limits_and_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="serving.rate_limit")
    limiter = TokenRateLimiter("3/minute", "redis://:hunter2@127.0.0.1:1/0")

    results = asyncio.run(hits(limiter, "t1", 5))

    assert results[:3] == [None, None, None]
    assert all(r is not None for r in results[3:])
    assert not limiter.shared
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "memory" in warnings[0]
    assert "127.0.0.1:1" in warnings[0]
    assert "hunter2" not in warnings[0]


class Timer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def redis_proxy(port: int = 0) -> AsyncIterator[tuple[int, asyncio.Server]]:
    """A loopback TCP proxy to the real Redis, to take it away and bring it back."""
    open_pipes: list[asyncio.StreamWriter] = []
    handlers: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        open_pipes.extend([writer, up_writer])
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        yield server.sockets[0].getsockname()[1], server
    finally:
        server.close()
        for w in open_pipes:
            w.close()
        if handlers:  # each ends once its sockets are closed; none is left to be cancelled
            await asyncio.wait(handlers, timeout=5)


def test_hit_when_redis_returns_then_counts_go_back_to_redis(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="serving.rate_limit")
    timer = Timer()

    async def run() -> list[bool]:
        shared = []
        async with redis_proxy() as (port, _):
            url = f"redis://127.0.0.1:{port}/0"
            limiter = TokenRateLimiter("100/minute", url, prefix, retry_redis_s=30, timer=timer)
            await limiter.hit("t1")
            shared.append(limiter.shared)
        await limiter.hit("t1")  # the proxy is gone: memory
        shared.append(limiter.shared)
        async with redis_proxy(port):
            timer.now += 29
            await limiter.hit("t1")  # not tried again yet
            shared.append(limiter.shared)
            timer.now += 1
            await limiter.hit("t1")
            shared.append(limiter.shared)
        return shared

    assert asyncio.run(run()) == [True, False, False, True]
    assert [r.getMessage()[:40] for r in caplog.records] == [
        "rate limits counted in this process's me",
        "rate limits counted in Redis again",
    ]
    assert len(redis_keys(prefix)) == 1
