"""Loopback HTTP/1.1 load generator: N keep-alive connections, each sending GETs back-to-back.

Why our own: no third-party load tool (wrk, hey, oha) is installable here, and every bench that
uses this one compares its figures to a reference app loaded by this same generator in the same
run, so the generator's own cost falls out of the ratio.

Run: .venv/bin/python -m bench.loadgen http://127.0.0.1:8000/api/v1/health [--seconds S]

Each run has two phases on fresh connections: a warm-up (caches, lazy imports, every worker
booted) that is not recorded, then the measured window. Connections are opened one after the
other, each primed with one request, so a multi-worker server's kernel spreads them over the
workers instead of one worker's accept loop taking a burst of them. A request counts when its
answer is complete inside the window; the ones still in flight at its end are dropped.
Only Content-Length and chunked bodies are read; a body delimited by closing the connection is
an error (`ProtocolError`), never a silent miscount.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
NO_BODY = {204, 304}
ERROR_PAUSE_S = 0.01  # after a failed request, so a dead server does not turn into a busy loop


class ProtocolError(Exception):
    """An answer this generator cannot delimit; counted as an error."""


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured; picklable, so it can come back from another process."""

    path: str
    connections: int
    seconds: float
    requests: int  # answers completed inside the window, whatever their status
    non_2xx: int
    errors: int
    p50_s: float
    p99_s: float
    first_error: str | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Tally:
    """Per-run counters shared by the connection loops (one event loop, so no locks)."""

    end: float
    record: bool
    latencies: list[float] = field(default_factory=list)
    non_2xx: int = 0
    errors: int = 0
    first_error: str | None = None

    def answer(self, started: float, done: float, status: int) -> None:
        if self.record and done <= self.end:
            self.latencies.append(done - started)
            self.non_2xx += not 200 <= status < 300

    def error(self, exc: BaseException) -> None:
        if self.record and time.perf_counter() <= self.end:
            self.errors += 1
            self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of `values`; 0.0 for none. No interpolation, so
    p99 is a latency some request really had."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def _request(host: str, port: int, path: str, headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\n{extra}\r\n".encode()


async def _read_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the blank line
                pass
            return
        await reader.readexactly(size + 2)  # the chunk and its CRLF


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one whole answer; return its status and whether the connection stays open."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {status_line!r}")
    status = int(parts[1])
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    if status in NO_BODY or 100 <= status < 200:
        pass
    elif "chunked" in headers.get("transfer-encoding", ""):
        await _read_chunked(reader)
    elif "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    else:
        raise ProtocolError(f"answer {status} has neither Content-Length nor chunked body")
    return status, headers.get("connection") != "close"


async def _close(streams: Streams | None) -> None:
    if streams is None:
        return
    streams[1].close()
    with contextlib.suppress(OSError):
        await streams[1].wait_closed()


async def _primed(host: str, port: int, request: bytes) -> Streams | None:
    """A new connection that has answered one request, so the server has accepted it (None
    when the server closed it after that answer)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    _, keep_alive = await read_response(reader)
    if keep_alive:
        return reader, writer
    await _close((reader, writer))
    return None


async def _drive(streams: Streams | None, host: str, port: int, request: bytes, t: _Tally) -> None:
    """One connection: requests back-to-back until the window ends, reconnecting when the
    server closes it or a request fails."""
    while time.perf_counter() < t.end:
        try:
            if streams is None:
                streams = await asyncio.open_connection(host, port)
            reader, writer = streams
            started = time.perf_counter()
            writer.write(request)
            status, keep_alive = await read_response(reader)
            t.answer(started, time.perf_counter(), status)
        except (OSError, EOFError, asyncio.LimitOverrunError, ValueError, ProtocolError) as exc:
            t.error(exc)  # IncompleteReadError is an EOFError
            await _close(streams)
            streams = None
            await asyncio.sleep(ERROR_PAUSE_S)
            continue
        if not keep_alive:
            await _close(streams)
            streams = None
    await _close(streams)


async def _phase(
    host: str,
    port: int,
    path: str,
    connections: int,
    seconds: float,
    record: bool,
    headers: dict[str, str] | None = None,
) -> _Tally:
    request = _request(host, port, path, headers)
    opened = [await _primed(host, port, request) for _ in range(connections)]
    tally = _Tally(end=time.perf_counter() + seconds, record=record)
    await asyncio.gather(*(_drive(s, host, port, request, tally) for s in opened))
    return tally


async def load(
    host: str,
    port: int,
    path: str,
    connections: int,
    seconds: float,
    warmup_s: float,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Warm up (not recorded), then load `path` for `seconds` on fresh connections; every
    request carries `headers` (a bearer token, say)."""
    if warmup_s > 0:
        await _phase(host, port, path, connections, warmup_s, False, headers)
    t = await _phase(host, port, path, connections, seconds, True, headers)
    return LoadResult(
        path=path,
        connections=connections,
        seconds=seconds,
        requests=len(t.latencies),
        non_2xx=t.non_2xx,
        errors=t.errors,
        p50_s=percentile(t.latencies, 0.50),
        p99_s=percentile(t.latencies, 0.99),
        first_error=t.first_error,
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop when it is installed: the generator should cost as little CPU as it can."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def _run(coro: Coroutine[Any, Any, LoadResult]) -> LoadResult:
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(coro)


def run_load(
    host: str,
    port: int,
    path: str,
    *,
    connections: int = 16,
    seconds: float = 3.0,
    warmup_s: float = 1.0,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Load `path` in this process, on a new event loop (blocking)."""
    return _run(load(host, port, path, connections, seconds, warmup_s, headers))


class LoadProcess:
    """The generator in a spawned process of its own, so its CPU never runs inside the caller's
    event loop or GIL and the caller can do other work (time a kill switch) during a run."""

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))

    def start(self, host: str, port: int, path: str, **options: Any) -> Future[LoadResult]:
        return self._pool.submit(run_load, host, port, path, **options)

    def run(self, host: str, port: int, path: str, **options: Any) -> LoadResult:
        return self.start(host, port, path, **options).result()

    def __enter__(self) -> LoadProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="http://127.0.0.1:PORT/path")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    url = urlsplit(args.url)
    if url.scheme != "http" or url.hostname is None:
        parser.error("only http://host:port/path URLs")
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    r = run_load(
        url.hostname,
        url.port or 80,
        path,
        connections=args.connections,
        seconds=args.seconds,
        warmup_s=args.warmup,
    )
    print(f"{r.path}: {r.rps:,.0f} req/s, p50 {r.p50_s * 1000:.2f} ms, "
          f"p99 {r.p99_s * 1000:.2f} ms, non-2xx {r.non_2xx}, errors {r.errors}"
          + (f" (first: {r.first_error})" if r.first_error else ""))  # fmt: skip


if __name__ == "__main__":
    main()
