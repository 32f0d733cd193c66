"""A scriptable OpenAI-compatible chat server on loopback, as a pytest plugin (`llm_server`).

It answers `POST /v1/chat/completions` the way OpenAI-compatible servers do, so the real
`openai` client can be tested against it: queued replies (`script`), or a function deciding per
request (`answer_with`, for parallel calls), with errors, delays, refusals and raw bodies.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_exceeded",
}


@dataclass(frozen=True)
class Reply:
    """One scripted response; `raw_body` is sent verbatim instead of a chat completion."""

    status: int = 200
    content: str | None = None
    finish_reason: str = "stop"
    refusal: str | None = None
    delay_s: float = 0.0
    usage: tuple[int, int] = (100, 20)  # prompt_tokens, completion_tokens
    headers: Mapping[str, str] = field(default_factory=dict)
    raw_body: str | None = None
    content_type: str = "application/json"


def answer(
    action: str = "BUY",
    confidence: float = 0.7,
    horizon: int = 4,
    reasons: tuple[str, ...] = ("momentum is up",),
    risk_flags: tuple[str, ...] = (),
) -> Reply:
    """A well-formed agent answer as the content of a chat completion."""
    body = {
        "action": action,
        "confidence": confidence,
        "horizon": horizon,
        "reasons": list(reasons),
        "risk_flags": list(risk_flags),
    }
    return Reply(content=json.dumps(body))


def malformed() -> Reply:
    """Content that is not JSON at all (a cut-off object)."""
    return Reply(content='{"action": "BUY", "confidence": 0.7, "horiz')


def schema_violation() -> Reply:
    """JSON that breaks the answer's schema: confidence above 1."""
    return answer(confidence=1.5)


def refusal(message: str = "I can't help with that request.") -> Reply:
    return Reply(content=None, refusal=message)


def truncated() -> Reply:
    """finish_reason=length with the partial text the model had written."""
    partial = '{"action": "SELL", "confidence": 0.6, "reasons": ["fund'
    return Reply(content=partial, finish_reason="length")


def slow(seconds: float) -> Reply:
    """A valid answer sent only after `seconds`."""
    return Reply(content=answer().content, delay_s=seconds)


def status(code: int, message: str = "", retry_after: float | None = None) -> Reply:
    """An OpenAI-style error response; `retry_after` sets the Retry-After header (seconds)."""
    headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
    error = {
        "message": message or f"scripted error {code}",
        "type": _ERROR_TYPES.get(code, "server_error" if code >= 500 else "api_error"),
        "code": str(code),
    }
    return Reply(status=code, headers=headers, raw_body=json.dumps({"error": error}))


def not_a_completion() -> Reply:
    """A 200 whose JSON body is not a chat completion."""
    return Reply(raw_body=json.dumps({"hello": "world"}))


def completion_body(reply: Reply, model: str) -> dict[str, Any]:
    prompt_tokens, completion_tokens = reply.usage
    message = {"role": "assistant", "content": reply.content, "refusal": reply.refusal}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": reply.finish_reason, "logprobs": None}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


Responder = Callable[[dict[str, Any]], Reply]


class LlmServer:
    """The server's script and what it received; thread-safe (handlers run in threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[Reply] = []
        self._responder: Responder | None = None
        self._requests: list[dict[str, Any]] = []
        self.stopping = threading.Event()  # wakes delayed replies at teardown
        self.base_url = ""

    def script(self, *replies: Reply) -> None:
        """Replies consumed in order; the last one repeats once the queue runs dry."""
        with self._lock:
            self._queue = list(replies)
            self._responder = None

    def answer_with(self, fn: Responder) -> None:
        """`fn(request_json) -> Reply` decides every response from now on."""
        with self._lock:
            self._responder = fn

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    def next_reply(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            self._requests.append(request)
            responder = self._responder
            if responder is None:
                if not self._queue:
                    return answer()
                return self._queue.pop(0) if len(self._queue) > 1 else self._queue[0]
        return responder(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    disable_nagle_algorithm = True  # else each small response waits ~40 ms for its ACK
    timeout = 10  # an idle keep-alive connection's thread ends on its own
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, json.dumps({"error": {"message": "no such route", "type": "x"}}))
            return
        try:
            request = json.loads(body)
        except json.JSONDecodeError:
            self._send(400, json.dumps({"error": {"message": "bad JSON", "type": "x"}}))
            return
        reply = self.server.llm.next_reply(request)
        if reply.delay_s and self.server.llm.stopping.wait(reply.delay_s):
            return
        text = reply.raw_body
        if text is None:
            text = json.dumps(completion_body(reply, str(request.get("model", ""))))
        self._send(reply.status, text, reply.headers, reply.content_type)

    def _send(
        self,
        code: int,
        text: str,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        data = text.encode("utf-8")
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): nothing to tell it

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest shows what matters


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # teardown must not wait for a reply still sleeping
    llm: LlmServer


@contextmanager
def serving() -> Iterator[LlmServer]:
    """An LlmServer on a free loopback port, answering until the block ends (the fixture's,
    and a bench's outside pytest)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.llm = LlmServer()
    host, port = server.server_address[:2]
    server.llm.base_url = f"http://{host}:{port}/v1"
    # A short poll interval: shutdown() waits up to one interval, and every test tears down.
    thread = threading.Thread(
        target=server.serve_forever, args=(0.02,), name="llm-server", daemon=True
    )
    thread.start()
    try:
        yield server.llm
    finally:
        server.llm.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def llm_server() -> Iterator[LlmServer]:
    with serving() as server:
        yield server
