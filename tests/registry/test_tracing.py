"""TracedChat against real MLflow Tracing (the sqlite store): a fake chat model is wrapped, the
wrapper and MLflow are real."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import mlflow
import pytest
from mlflow.entities import LiveSpan, SpanType, Trace
from openai import OpenAI

from core.agents.calls import CallOutcome, ChatReply
from registry.tracing import TracedChat, flush_traces

OK = ChatReply(CallOutcome.OK, '{"action": "HOLD"}', "stop", 120, 30, 12.5)


class FakeChat:
    """A chat model that answers `reply` to every call and remembers the calls' tags."""

    model = "fake-model"
    endpoint = "127.0.0.1"

    def __init__(self, reply: ChatReply = OK, together: int = 1) -> None:
        self.reply = reply
        self.calls: list[Mapping[str, str]] = []
        self._together = threading.Barrier(together)  # holds calls until `together` are in

    def ask(self, system: str, user: str, deadline: float, tags: Mapping[str, str]) -> ChatReply:
        self.calls.append(dict(tags))
        self._together.wait(timeout=10)
        return self.reply


class BrokenChat(FakeChat):
    def ask(self, system: str, user: str, deadline: float, tags: Mapping[str, str]) -> ChatReply:
        super().ask(system, user, deadline, tags)
        raise RuntimeError("a bug in the transport")


def tags(decision_id: str, agent: str = "bull", round_: int = 0) -> dict[str, str]:
    return {"decision_id": decision_id, "agent": agent, "round": str(round_)}


def traces_of(decision_id: str) -> list[Trace]:
    flush_traces()
    return mlflow.search_traces(
        filter_string=f"tags.decision_id = '{decision_id}'", return_type="list"
    )


def test_ask_when_wrapped_then_model_endpoint_and_reply_pass_through(mlflow_store: str) -> None:
    inner = FakeChat()
    traced = TracedChat(inner)

    reply = traced.ask("sys", "usr", 0.0, tags("d-same"))

    assert (traced.model, traced.endpoint) == ("fake-model", "127.0.0.1")
    assert reply is OK
    assert inner.calls == [tags("d-same")]


def test_ask_when_two_threads_then_each_decision_has_its_own_tagged_trace(
    mlflow_store: str,
) -> None:
    traced = TracedChat(FakeChat(together=2))  # both calls are in flight at once
    calls = [("sys-a", "usr-a", tags("d-1", "bull", 0)), ("sys-b", "usr-b", tags("d-2", "bear", 1))]

    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda c: traced.ask(c[0], c[1], 0.0, c[2]), calls))

    assert replies == [OK, OK]
    for system, user, sent in calls:
        (trace,) = traces_of(sent["decision_id"])
        assert {k: trace.info.tags[k] for k in sent} == sent
        (span,) = trace.data.spans
        assert span.name == f"{sent['agent']} round {sent['round']}"
        assert span.span_type == SpanType.CHAT_MODEL
        assert span.inputs == {"model": "fake-model", "system": system, "user": user}
        assert span.outputs["text"] == OK.text
        assert span.outputs["outcome"] == "ok"
        assert (span.outputs["tokens_in"], span.outputs["latency_ms"]) == (120, 12.5)
        assert trace.info.token_usage["total_tokens"] == 150
        assert trace.info.state.value == "OK"


def test_ask_when_reply_not_answered_then_trace_marked_failed(mlflow_store: str) -> None:
    timeout = ChatReply(CallOutcome.TIMEOUT, "", "", 0, 0, 30_000.0, error="deadline passed")

    reply = TracedChat(FakeChat(timeout)).ask("sys", "usr", 0.0, tags("d-late"))

    assert reply is timeout
    (trace,) = traces_of("d-late")
    assert trace.info.state.value == "ERROR"
    assert trace.data.spans[0].outputs["error"] == "deadline passed"


def test_ask_when_inner_raises_then_error_passes_through_and_is_traced(mlflow_store: str) -> None:
    with pytest.raises(RuntimeError, match="a bug in the transport"):
        TracedChat(BrokenChat()).ask("sys", "usr", 0.0, tags("d-bug"))

    (trace,) = traces_of("d-bug")
    assert trace.info.state.value == "ERROR"
    assert mlflow.get_current_active_span() is None


def _raise(*args: object, **kwargs: object) -> None:
    raise RuntimeError("tracing is down")


@pytest.mark.parametrize(
    ("owner", "name"),
    [(mlflow, "start_span"), (mlflow, "update_current_trace"), (LiveSpan, "set_outputs")],
)
def test_ask_when_tracing_fails_then_reply_still_returned(
    mlflow_store: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    owner: object,
    name: str,
) -> None:
    monkeypatch.setattr(owner, name, _raise)
    inner = FakeChat()

    with caplog.at_level(logging.WARNING, logger="registry.tracing"):
        reply = TracedChat(inner).ask("sys", "usr", 0.0, tags("d-down"))

    assert reply is OK
    assert len(inner.calls) == 1  # the call is made once, traced or not
    assert "tracing is down" in caplog.text
    assert mlflow.get_current_active_span() is None  # no half-open span left behind


def test_flush_when_mlflow_fails_then_nothing_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mlflow, "flush_trace_async_logging", _raise)

    flush_traces()


# -- with mlflow.openai.autolog on: its span nests in the call's trace -----------------------


class _Completions(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": "fake-model",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": OK.text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def openai_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Completions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


class OpenAIChat:
    """The smallest ChatModel over the real openai client."""

    model = "fake-model"
    endpoint = "127.0.0.1"

    def __init__(self, base_url: str) -> None:
        self.client = OpenAI(base_url=base_url, api_key="x", max_retries=0)

    def ask(self, system: str, user: str, deadline: float, tags: Mapping[str, str]) -> ChatReply:
        answer = self.client.chat.completions.create(
            model=self.model,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        )
        usage = answer.usage
        tokens = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        text = answer.choices[0].message.content or ""
        return ChatReply(CallOutcome.OK, text, "stop", *tokens, latency_ms=1.0)


@pytest.fixture
def autolog() -> Iterator[None]:
    mlflow.openai.autolog(silent=True)
    try:
        yield
    finally:
        mlflow.openai.autolog(disable=True, silent=True)


def test_ask_when_openai_autolog_on_then_one_trace_per_call_with_the_decision_tag(
    mlflow_store: str, openai_url: str, autolog: None
) -> None:
    traced = TracedChat(OpenAIChat(openai_url))

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda d: traced.ask("sys", "usr", 0.0, tags(d)), ["d-a", "d-b"]))

    flush_traces()
    assert len(mlflow.search_traces(return_type="list")) == 2  # no trace of autolog's own
    for decision in ("d-a", "d-b"):
        (trace,) = traces_of(decision)
        ours, request = trace.data.spans
        assert request.parent_id == ours.span_id
        assert request.inputs["messages"][1]["content"] == "usr"
        # Both spans carry the usage: MLflow counts it once, not twice.
        assert trace.info.token_usage["total_tokens"] == 150
