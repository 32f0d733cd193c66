"""The load generator against a stdlib HTTP/1.1 server whose requests we count: bench.api's
figures are only as good as its counting and timing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.loadgen import LoadProcess, ProtocolError, percentile, run_load

SLOW_S = 0.02


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like uvicorn
    disable_nagle_algorithm = True  # headers and body go out in two writes
    count = 0
    flaky = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        with _Handler.lock:
            _Handler.count += 1
            _Handler.flaky += self.path == "/flaky"
            drop = self.path == "/flaky" and _Handler.flaky % 2 == 0
        if drop:  # every other /flaky request: hang up without an answer
            self.close_connection = True
            return
        if self.path == "/slow":
            time.sleep(SLOW_S)
        if self.path == "/chunked":
            self._chunked()
        elif self.path == "/no-length":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"body until close")
            self.close_connection = True
        else:
            self._plain()

    def _plain(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(404 if self.path == "/missing" else 200)
        self.send_header("Content-Length", str(len(body)))
        if self.path == "/close":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _chunked(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_load_when_server_answers_then_counts_every_request_in_the_window(port: int) -> None:
    before = _Handler.count
    r = run_load("127.0.0.1", port, "/ok", connections=3, seconds=0.5, warmup_s=0)
    served = _Handler.count - before
    # The server also saw one priming request per connection and at most one per connection
    # still in flight when the window closed; nothing else.
    assert 3 <= served - r.requests <= 6
    assert r.requests > 50
    assert (r.non_2xx, r.errors, r.first_error) == (0, 0, None)
    assert r.rps == pytest.approx(r.requests / 0.5)
    assert 0 < r.p50_s <= r.p99_s < 0.5


def test_load_when_each_answer_takes_20ms_then_latencies_and_rate_show_it(port: int) -> None:
    r = run_load("127.0.0.1", port, "/slow", connections=2, seconds=0.6, warmup_s=0.1)
    assert SLOW_S <= r.p50_s < 5 * SLOW_S
    assert r.p50_s <= r.p99_s
    assert 10 <= r.requests <= 0.6 * 2 / SLOW_S + 2  # two connections, one at a time each


def test_load_when_answers_are_404_then_counted_as_non_2xx_not_errors(port: int) -> None:
    r = run_load("127.0.0.1", port, "/missing", connections=2, seconds=0.3, warmup_s=0)
    assert r.requests > 0
    assert (r.non_2xx, r.errors) == (r.requests, 0)


@pytest.mark.parametrize("path", ["/chunked", "/close"])
def test_load_when_chunked_or_closing_answers_then_read_whole(port: int, path: str) -> None:
    r = run_load("127.0.0.1", port, path, connections=2, seconds=0.3, warmup_s=0)
    assert r.requests > 10
    assert (r.non_2xx, r.errors) == (0, 0)


def test_load_when_body_ends_at_close_then_fails_clearly(port: int) -> None:
    with pytest.raises(ProtocolError, match="neither Content-Length nor chunked"):
        run_load("127.0.0.1", port, "/no-length", connections=1, seconds=0.2, warmup_s=0)


def test_load_when_server_hangs_up_then_counted_as_errors_and_reconnects(port: int) -> None:
    r = run_load("127.0.0.1", port, "/flaky", connections=1, seconds=0.3, warmup_s=0)
    assert r.requests > 10
    assert abs(r.errors - r.requests) <= 1
    assert r.first_error is not None
    assert r.first_error.startswith("IncompleteReadError")


def test_load_when_nothing_listens_then_fails_at_once() -> None:
    with pytest.raises(ConnectionRefusedError):  # the first connection fails at once
        run_load("127.0.0.1", 9, "/ok", connections=1, seconds=0.1, warmup_s=0)


def test_load_process_when_run_then_result_comes_back_from_the_child(port: int) -> None:
    with LoadProcess() as gen:
        r = gen.run("127.0.0.1", port, "/ok", connections=2, seconds=0.3, warmup_s=0)
    assert r.requests > 10
    assert r.errors == 0


def test_percentile_when_nearest_rank_then_a_real_sample() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([], 0.5) == 0.0
