"""API under load: req/s and p50/p99 of health, status and two authenticated reads (the orders
list, positions) with 1 and 2 workers; the kill switch's request -> durable HALTED time while
the orders list is under load; WebSocket fan-out of events to 100 clients.

Run: .venv/bin/python -m bench.api [--seconds S] [--database-url URL]  (from the repo root)

Reference, measured in the same run and the same way: a bare FastAPI app with one sync `def`
endpoint returning a small JSON, served by uvicorn with the options `tradeflow serve` uses
(factory, no proxy headers, no server header, no access log; uvloop and httptools picked by
uvicorn when installed). The real API is started the way a user starts it,
`tradeflow serve --port P --workers W`, on a fresh ledger (SQLite under a temp dir, or a fresh
PostgreSQL schema with --database-url) and the paper exchange, no alert URLs.

Load: bench.loadgen in a process of its own, N keep-alive connections sending GETs
back-to-back after a warm-up; the server and the generator share the machine's cores, which is
why every figure is read against the hello measured the same way. Target: status >= 0.5x hello
on the same workers.

Authenticated reads carry a read-scope bearer token issued into the ledger before the API
starts; every request is verified and counted by the per-token rate limiter (in memory, its
threshold raised out of the way). The ledger holds 500 orders.

Kill switch: while the orders list is loaded, signed activations (a deactivation after each)
are POSTed;
a thread reads the kill switch straight from the ledger every ~1 ms, and the first read that
says active ends "durable HALTED" (committed, so every process and restart sees it). Also
reported: request -> answer (the answer comes after the orders are cancelled).

WebSocket (2 workers): 100 clients subscribed to `safety`, 30 events published into the outbox by
this process (as a flow worker publishes them), latency from the write to each receipt
(bench/ws_fanout.py).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from bench.loadgen import LoadProcess, LoadResult, percentile
from bench.schemas import drop_schema, fresh_schema
from bench.ws_fanout import FanoutResult, fanout
from core.safety.signing import sign
from services.safety_requests import SIGNATURE_HEADER, TIMESTAMP_HEADER
from serving.app import SERVER_OPTIONS

HOST = "127.0.0.1"
HELLO, HEALTH, STATUS = "/hello", "/api/v1/health", "/api/v1/safety/status"
# Authenticated reads (bearer token, read scope) over a seeded ledger.
ORDERS, POSITIONS = "/api/v1/orders?limit=50", "/api/v1/positions"
SEEDED_ORDERS = 500
WS_CLIENTS, WS_EVENTS = 100, 30
KILL_SWITCH = "/api/v1/safety/kill-switch"
WORKER_COUNTS = (1, 2)
TARGET_RATIO = 0.5
TARGET_RPS_2W = 2_000  # GETs on 2 workers
TARGET_HALTED_S = 0.050  # the kill switch's durable HALTED, p99, while GETs are loaded
READY_TIMEOUT_S = 60.0
POLL_S = 0.001  # the durable poller's period
PAUSE_S = 0.1  # between one deactivation and the next activation
KILL_SWITCH_LOAD_S = 10.0  # status load while the activations run (~25 fit in it)
ROOT = Path(__file__).resolve().parents[1]


def hello_app() -> FastAPI:
    """The reference: FastAPI's cheapest useful endpoint, a sync def returning a small JSON."""
    app = FastAPI()

    @app.get(HELLO)
    def hello() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve_hello(port: int, workers: int) -> None:
    """The hello served exactly as cli/main.py `serve` serves the API."""
    import uvicorn

    uvicorn.run(
        "bench.api:hello_app", factory=True, host=HOST, port=port, workers=workers,
        **SERVER_OPTIONS,
    )  # fmt: skip


@dataclass
class Setup:
    """What every phase of one run shares."""

    var: Path
    url: str
    secret: str
    seconds: float
    connections: int
    warmup_s: float
    activations: int
    signer: Signer
    token: str = ""  # read scope, issued into the ledger before the API starts

    @property
    def load_options(self) -> dict[str, Any]:
        return {"connections": self.connections, "seconds": self.seconds, "warmup_s": self.warmup_s}

    @property
    def authed(self) -> dict[str, Any]:
        return {**self.load_options, "headers": {"Authorization": f"Bearer {self.token}"}}


@dataclass(frozen=True)
class Row:
    workers: int
    what: str
    load: LoadResult | None = None
    p50_s: float | None = None
    p99_s: float | None = None
    ratio: float | None = None
    note: str = ""
    failure: str | None = None


@dataclass
class KillSwitchTimes:
    durable_s: list[float] = field(default_factory=list)
    answer_s: list[float] = field(default_factory=list)
    failure: str | None = None


class BenchFailure(Exception):
    """The API did something the bench cannot measure through (a refused request)."""


class Signer:
    """Signed kill-switch headers. A signature is single-use and its timestamp must lie within
    30 s of the server's clock, so each (action, second) pair is used once, newest first, never
    further back than LOOKBACK_S; when all are used, wait for the clock to give a new one."""

    LOOKBACK_S = 25

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._used: set[tuple[str, int]] = set()

    def headers(self, action: str) -> dict[str, str]:
        ts = self._fresh(action)
        return {
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self._secret, action, ts),
            "Content-Type": "application/json",
        }

    def _fresh(self, action: str) -> int:
        while True:
            now = int(time.time())
            for ts in range(now, now - self.LOOKBACK_S, -1):
                if (action, ts) not in self._used:
                    self._used.add((action, ts))
                    return ts
            time.sleep(0.2)


class DurablePoller:
    """Reads the kill switch straight from the ledger every ~1 ms from its own thread, while
    armed: the first read that says active is when HALTED is durable for every process."""

    def __init__(self, url: str) -> None:
        from infra.ledger.ledger import open_ledger

        self._ledger = open_ledger(url)
        self._armed, self._seen = threading.Event(), threading.Event()
        self._stop = threading.Event()
        self._seen_at = 0.0
        self.error: str | None = None
        self._thread = threading.Thread(target=self._poll, name="durable-poller", daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            if not self._armed.wait(0.05):
                continue
            try:
                active = self._ledger.safety.kill_switch().active
            except Exception as exc:  # reported by wait() timing out, with the reason
                self.error = f"{type(exc).__name__}: {exc}"
                return
            if active:
                self._seen_at = time.perf_counter()
                self._armed.clear()
                self._seen.set()
            else:
                time.sleep(POLL_S)

    def arm(self) -> None:
        """Call while the kill switch is off, just before sending the activation."""
        self._seen.clear()
        self._armed.set()

    def wait(self, timeout_s: float) -> float:
        if not self._seen.wait(timeout_s):
            self._armed.clear()
            raise BenchFailure(f"the ledger never said active within {timeout_s:.0f} s"
                               + (f" ({self.error})" if self.error else ""))  # fmt: skip
        return self._seen_at

    def __enter__(self) -> DurablePoller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_ready(proc: subprocess.Popen[bytes], port: int, path: str, log: Path) -> None:
    """Until `path` answers 200: a server that exits or never gets there fails the bench with
    the end of its log."""
    deadline, last = time.monotonic() + READY_TIMEOUT_S, "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchFailure(f"server exited with {proc.returncode}:\n{_tail(log)}")
        try:
            status = _get(port, path)
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if status == 200:
                return
            last = f"HTTP {status}"
        time.sleep(0.1)
    raise BenchFailure(f"{path} not ready in {READY_TIMEOUT_S:.0f} s ({last}):\n{_tail(log)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """The server runs in its own process group: stop the supervisor and every worker."""
    for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def _serving(
    cmd: list[str], cwd: Path, env: dict[str, str], ready_path: str, log: Path
) -> Iterator[int]:
    """Start `cmd` with `--port P` appended in its own process group; yield P once ready."""
    port = _free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(proc, port, ready_path, log)
        if "--workers" in cmd and cmd[cmd.index("--workers") + 1] != "1":
            time.sleep(1.0)  # the other workers boot alongside; the load's warm-up covers the rest
        yield port
    finally:
        _stop(proc)


def _hello_server(setup: Setup, workers: int) -> AbstractContextManager[int]:
    """The reference app in a process group of its own, like the API (from the repo root, where
    `bench` imports)."""
    code = (
        "import sys; from bench.api import serve_hello; "
        "serve_hello(int(sys.argv[sys.argv.index('--port') + 1]), int(sys.argv[2]))"
    )
    cmd = [sys.executable, "-c", code, "--workers", str(workers)]
    return _serving(cmd, ROOT, dict(os.environ), HELLO, setup.var / f"hello-{workers}.log")


def _api_env(setup: Setup) -> dict[str, str]:
    """The caller's environment without its TRADEFLOW_ settings (a bench must never reach a real
    exchange, real alert URLs or a real ledger), plus this run's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEFLOW_")}
    env.update(
        TRADEFLOW_VAR_DIR=str(setup.var),
        TRADEFLOW_KILL_SWITCH_SECRET=setup.secret,
        TRADEFLOW_DATABASE_URL=setup.url,
        TRADEFLOW_BROKER="paper",
        TRADEFLOW_ALERT_URLS="",
        # Every request still goes through the per-token limiter (in memory): only its
        # threshold is raised, so the figures are the API's, not the limit's.
        TRADEFLOW_API_RATE_LIMIT="1000000/second",
        TRADEFLOW_LOG_LEVEL="WARNING",
    )
    return env


def _api_server(setup: Setup, workers: int) -> AbstractContextManager[int]:
    """`tradeflow serve` as a user runs it, from the temp dir so no .env of the caller's is read."""
    cmd = [str(Path(sys.executable).parent / "tradeflow"), "serve", "--workers", str(workers)]
    return _serving(cmd, setup.var, _api_env(setup), HEALTH, setup.var / f"api-{workers}.log")


def _post(conn: http.client.HTTPConnection, signer: Signer, action: str) -> None:
    body = json.dumps({"action": action, "reason": f"bench.api {action}"})
    try:
        conn.request("POST", KILL_SWITCH, body=body, headers=signer.headers(action))
        response = conn.getresponse()
        text = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise BenchFailure(f"{action}: {type(exc).__name__}: {exc}") from exc
    if response.status != 200:
        raise BenchFailure(f"{action}: HTTP {response.status} {text[:300]!r}")


def _one_activation(
    conn: http.client.HTTPConnection, signer: Signer, poller: DurablePoller
) -> tuple[float, float]:
    """Seconds from sending a signed activation to durable HALTED, and to its answer; then
    release it again so the next activation changes the state too."""
    poller.arm()
    started = time.perf_counter()
    _post(conn, signer, "activate")
    answered = time.perf_counter()
    durable = poller.wait(10.0)
    _post(conn, signer, "deactivate")
    return durable - started, answered - started


def _kill_switch_cycles(
    port: int, setup: Setup, poller: DurablePoller, until: float
) -> KillSwitchTimes:
    times = KillSwitchTimes()
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        _post(conn, setup.signer, "deactivate")  # start from off, whatever an earlier phase left
        while len(times.durable_s) < setup.activations and time.monotonic() < until:
            durable, answer = _one_activation(conn, setup.signer, poller)
            times.durable_s.append(durable)
            times.answer_s.append(answer)
            time.sleep(PAUSE_S)
    except BenchFailure as exc:  # stop at the first refusal: more would trip the rate limit
        times.failure = str(exc)
    finally:
        conn.close()
    return times


def _kill_switch_under_load(
    gen: LoadProcess, port: int, setup: Setup
) -> tuple[KillSwitchTimes, LoadResult]:
    """Activations while the authenticated orders list is loaded by the generator's process,
    for as long as it loads."""
    load_s = max(setup.seconds, KILL_SWITCH_LOAD_S)
    options = {**setup.authed, "seconds": load_s}
    future = gen.start(HOST, port, ORDERS, **options)
    with DurablePoller(setup.url) as poller:
        time.sleep(setup.warmup_s + 0.5)  # past the warm-up: the measured window is on
        times = _kill_switch_cycles(port, setup, poller, until=time.monotonic() + load_s - 1.5)
    return times, future.result()


def _measure(gen: LoadProcess, setup: Setup, workers: int) -> list[Row]:
    print(f"... {workers} worker(s): hello", file=sys.stderr, flush=True)
    with _hello_server(setup, workers) as port:
        hello = gen.run(HOST, port, HELLO, **setup.load_options)
    print(f"... {workers} worker(s): API", file=sys.stderr, flush=True)
    with _api_server(setup, workers) as port:
        reads = {
            HEALTH: gen.run(HOST, port, HEALTH, **setup.load_options),
            STATUS: gen.run(HOST, port, STATUS, **setup.load_options),
            ORDERS: gen.run(HOST, port, ORDERS, **setup.authed),
            POSITIONS: gen.run(HOST, port, POSITIONS, **setup.authed),
        }
        times, during = _kill_switch_under_load(gen, port, setup)
        fan = _fanout(port, setup) if workers == max(WORKER_COUNTS) else None
    return [*_rows(workers, hello, reads, times, during), *_fanout_rows(workers, fan)]


def _fanout(port: int, setup: Setup) -> FanoutResult:
    print(f"... WebSocket fan-out to {WS_CLIENTS} clients", file=sys.stderr, flush=True)
    return fanout(port, setup.token, setup.url, WS_CLIENTS, WS_EVENTS)


def _fanout_rows(workers: int, fan: FanoutResult | None) -> list[Row]:
    if fan is None:
        return []
    what = f"WS event -> {fan.clients} clients"
    note = f"{fan.delivered}/{fan.expected} delivered ({fan.events} events)"
    return [Row(workers, what, p50_s=fan.p50_s, p99_s=fan.p99_s, note=note, failure=fan.failure)]


def _rows(
    workers: int,
    hello: LoadResult,
    reads: dict[str, LoadResult],
    times: KillSwitchTimes,
    during: LoadResult,
) -> list[Row]:
    def ratio(r: LoadResult) -> float:
        return r.rps / hello.rps if hello.rps else 0.0

    def target(r: LoadResult) -> str:
        met = ratio(r) >= TARGET_RATIO and (workers < 2 or r.rps >= TARGET_RPS_2W)
        rps = f", >= {TARGET_RPS_2W:,} req/s" if workers >= 2 else ""
        return f"target >= {TARGET_RATIO:.1f}x{rps}: {'met' if met else 'NOT met'}"

    durable, answer = times.durable_s, times.answer_s

    def p(values: list[float], q: float) -> float | None:
        return percentile(values, q) if values else None

    n = f"n={len(times.durable_s)}" + (", stopped: see below" if times.failure else "")
    halted = p(durable, 0.99)
    met = "met" if halted is not None and halted < TARGET_HALTED_S else "NOT met"
    rows = [Row(workers, f"GET {HELLO} (reference)", hello, ratio=1.0)]
    for path, r in reads.items():
        authed = " (bearer)" if path in (ORDERS, POSITIONS) else ""
        rows.append(Row(workers, f"GET {path}{authed}", r, ratio=ratio(r), note=target(r)))
    return [
        *rows,
        Row(workers, f"  {ORDERS.split('?')[0]}, during the kill switch", during,
            ratio=ratio(during)),
        Row(workers, "POST kill-switch -> durable HALTED", p50_s=p(durable, 0.5), p99_s=halted,
            note=f"{n}; target p99 < {TARGET_HALTED_S * 1000:.0f} ms: {met}"),
        Row(workers, "POST kill-switch -> answer", p50_s=p(answer, 0.5), p99_s=p(answer, 0.99),
            note=n, failure=times.failure),
    ]  # fmt: skip


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.1f}"


def _line(row: Row) -> str:
    r = row.load
    p50, p99 = (r.p50_s, r.p99_s) if r else (row.p50_s, row.p99_s)
    cells = [
        f"{row.workers:>7}",
        f"{row.what:<38}",
        f"{r.rps:>8,.0f}" if r else f"{'':>8}",
        f"{_ms(p50):>8}",
        f"{_ms(p99):>8}",
        f"{r.non_2xx:>7}" if r else f"{'':>7}",
        f"{r.errors:>6}" if r else f"{'':>6}",
        f"{row.ratio:>7.2f}x" if row.ratio is not None else f"{'':>8}",
    ]
    return "  ".join(cells) + (f"  {row.note}" if row.note else "")


def _print_table(rows: list[Row]) -> None:
    head = ["workers", f"{'what':<38}", f"{'req/s':>8}", f"{'p50 ms':>8}", f"{'p99 ms':>8}",
            "non-2xx", "errors", "vs hello"]  # fmt: skip
    print("  ".join(head))
    for row in rows:
        print(_line(row))
    for row in rows:  # what the API refused or failed, so a figure is never read without it
        r = row.load
        if r and (r.non_2xx or r.errors):
            print(f"note: {row.workers}w {row.what.strip()}: {r.non_2xx} non-2xx, {r.errors} "
                  f"errors" + (f" (first: {r.first_error})" if r.first_error else ""))  # fmt: skip
        if row.failure:
            print(f"note: {row.workers}w kill switch stopped: {row.failure}")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _header(setup: Setup, postgres: bool) -> None:
    from importlib.util import find_spec

    extras = ", ".join(f"{m} {'yes' if find_spec(m) else 'no'}" for m in ("uvloop", "httptools"))
    print("API under load against a bare FastAPI hello (one sync def returning a small JSON), "
          "served with tradeflow serve's uvicorn options, both measured in this run")  # fmt: skip
    print(f"machine: {os.cpu_count()} cores ({_cpu()}), {platform.system()} "
          f"{platform.machine()}, Python {platform.python_version()}, {extras}; "
          f"ledger: {'PostgreSQL' if postgres else 'SQLite'}, paper exchange")  # fmt: skip
    print(f"load: bench.loadgen in its own process on the same cores, {setup.connections} "
          f"keep-alive connections, {setup.warmup_s:g} s warm-up + {setup.seconds:g} s per row; "
          f"kill switch: {setup.activations} signed activations while the orders list is loaded "
          f"({max(setup.seconds, KILL_SWITCH_LOAD_S):g} s)")  # fmt: skip


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per row")
    parser.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds per row")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--activations", type=int, default=25, help="per worker count")
    parser.add_argument("--database-url", default=None, help="PostgreSQL (a fresh schema)")
    return parser.parse_args()


def _seed(url: str) -> str:
    """A ledger with SEEDED_ORDERS filled orders (so the orders list reads real rows, 50 a page,
    and the kill switch has none to cancel) and a read token, whose text is returned."""
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from core.auth import Scope
    from core.orders import Order, OrderStatus, client_order_id_for, decision_id_for
    from core.types import Side, Symbol
    from infra.ledger.ledger import open_ledger
    from services.api_tokens import issue

    ledger = open_ledger(url)  # migrated here, before any server starts
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    orders = []
    for n in range(SEEDED_ORDERS):
        at = t0 + timedelta(hours=n)
        decision = decision_id_for("paper", "BTC/USDT", "1h", at)
        side = Side.BUY if n % 2 == 0 else Side.SELL
        qty = Decimal("0.01")
        orders.append(Order(client_order_id_for(decision), None, Symbol("BTC/USDT"), side, qty,
                            at, at, status=OrderStatus.FILLED, filled_quantity=qty,
                            filled_cost=Decimal("420")))  # fmt: skip
    ledger.orders.insert_many(orders, "paper", "paper")
    return issue(ledger.tokens, "bench", [Scope.READ], datetime.now(UTC)).text


def _run(args: argparse.Namespace, var: Path, url: str) -> list[Row]:
    secret = secrets.token_hex(32)
    setup = Setup(
        var, url, secret, args.seconds, args.connections, args.warmup, args.activations,
        Signer(secret), token=_seed(url),
    )  # fmt: skip
    _header(setup, args.database_url is not None)
    sys.stdout.flush()  # before the progress lines on stderr
    with LoadProcess() as gen:
        return [row for w in WORKER_COUNTS for row in _measure(gen, setup, w)]


def main() -> None:
    args = _args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tradeflow-bench-api-") as tmp:
        var = Path(tmp)
        schema, url = (None, f"sqlite:///{var / 'ledger.db'}")
        if args.database_url:
            schema, url = fresh_schema(args.database_url, "bench_api")
        try:
            rows = _run(args, var, url)
        except BenchFailure as exc:
            sys.exit(f"bench.api failed: {exc}")
        finally:
            if schema is not None:
                drop_schema(args.database_url, schema, url)
    _print_table(rows)
    print(f"bench took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
