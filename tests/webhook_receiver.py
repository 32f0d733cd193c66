"""A loopback HTTP receiver for webhooks and alerts: it answers each POST as scripted (ok, a 500,
or too slow to answer), checks each delivery's signature with core.webhooks.verify, and keeps
what it received. `free_port()` names a loopback port nothing listens on (yet).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from core.webhooks import SIGNATURE_HEADER, InvalidSignature, verify


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # the default 5 drops parallel connects (a 1 s SYN retry each)


class Answer(StrEnum):
    OK = "ok"  # 200
    FAIL = "fail"  # 500
    SLOW = "slow"  # answers 200 only after `slow_s`: past the sender's timeout


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answer: Answer
    signature_error: str | None  # None: verified (or no secret to verify with)


class Receiver:
    def __init__(
        self,
        secret: str | None = None,
        now: Callable[[], datetime] | None = None,
        slow_s: float = 1.0,
        port: int = 0,
    ) -> None:
        self.secret, self.now, self.slow_s = secret, now, slow_s
        self.script: deque[Answer] = deque()  # next answers; then OK
        self.received: list[Received] = []
        self.arrived = threading.Condition()
        self._server = _Server(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def answer(self, *answers: Answer) -> None:
        self.script.extend(answers)

    def ok(self) -> list[Received]:
        return [r for r in self.received if r.answer is Answer.OK]

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Received]:
        """Block until `count` requests arrived (or the timeout: the caller's assert fails)."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout_s)
            return list(self.received)

    def _record(self, handler: BaseHTTPRequestHandler, body: bytes, answer: Answer) -> None:
        error = None
        if self.secret is not None and self.now is not None:
            try:
                verify(handler.headers.get(SIGNATURE_HEADER), body, self.secret, self.now())
            except InvalidSignature as exc:
                error = str(exc)
        received = Received(handler.path, dict(handler.headers), body, answer, error)
        with self.arrived:
            self.received.append(received)
            self.arrived.notify_all()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # else each answer waits ~40 ms for a delayed ACK

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = receiver.script.popleft() if receiver.script else Answer.OK
                receiver._record(self, body, answer)
                if answer is Answer.SLOW:
                    time.sleep(receiver.slow_s)
                code = 500 if answer is Answer.FAIL else 200
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the sender gave up waiting (a timeout): nobody to answer
                    pass

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def running(
    secret: str | None = None,
    now: Callable[[], datetime] | None = None,
    slow_s: float = 1.0,
    port: int = 0,
) -> Iterator[Receiver]:
    receiver = Receiver(secret, now, slow_s, port).start()
    try:
        yield receiver
    finally:
        receiver.stop()


def free_port() -> int:
    """A loopback port that was just free: a connection to it is refused until a receiver
    starts there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
