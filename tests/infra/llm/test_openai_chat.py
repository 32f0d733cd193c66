"""OpenAiChat through the real openai client against the scripted loopback server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from core.agents.answer import InvalidAnswer, read_answer
from core.agents.calls import CallOutcome, ChatReply
from infra.llm.openai_chat import OpenAiChat, answer_format, host_of
from tests.llm_server import (
    LlmServer,
    Reply,
    answer,
    malformed,
    not_a_completion,
    refusal,
    slow,
    status,
    truncated,
)

TIMEOUT_S = 0.3
MARGIN_S = 0.25  # scheduling slack on a busy CI machine
SYSTEM, USER = "You are the Bull agent.", "BTC/USDT 1h: argue for a trade."

MakeChat = Callable[..., OpenAiChat]


@pytest.fixture
def make_chat(llm_server: LlmServer) -> MakeChat:
    def make(**overrides: Any) -> OpenAiChat:
        settings: dict[str, Any] = {
            "base_url": llm_server.base_url,
            "model": "test-model",
            "api_key": None,
            "timeout_s": TIMEOUT_S,
            "max_output_tokens": 256,
            "max_attempts": 3,
            "backoff_s": 0.01,
        }
        return OpenAiChat(**{**settings, **overrides})

    return make


def ask(chat: OpenAiChat, within_s: float = 2.0, system: str = SYSTEM) -> tuple[ChatReply, float]:
    """The reply and the seconds the ask took."""
    started = time.monotonic()
    reply = chat.ask(system, USER, started + within_s, {"agent": "bull"})
    return reply, time.monotonic() - started


def test_ask_when_valid_answer_then_ok_with_text_and_tokens(
    llm_server: LlmServer, make_chat: MakeChat
) -> None:
    llm_server.script(Reply(content=answer(action="SELL").content, usage=(321, 45)))
    chat = make_chat()

    reply, _ = ask(chat)

    assert reply.outcome is CallOutcome.OK
    assert json.loads(reply.text)["action"] == "SELL"
    assert (reply.tokens_in, reply.tokens_out) == (321, 45)
    assert reply.finish_reason == "stop"
    assert reply.attempts == 1
    assert reply.error == ""
    assert reply.latency_ms > 0
    assert chat.model == "test-model"
    assert chat.endpoint == host_of(llm_server.base_url)


def test_ask_when_called_then_request_carries_strict_schema_max_tokens_and_messages(
    llm_server: LlmServer, make_chat: MakeChat
) -> None:
    ask(make_chat(max_output_tokens=123, temperature=0.2))

    [request] = llm_server.requests
    assert request["model"] == "test-model"
    assert request["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": USER},
    ]
    assert request["max_tokens"] == 123
    assert request["temperature"] == 0.2
    assert request["seed"] == 0
    response_format = request["response_format"]
    assert response_format == answer_format()
    assert response_format["type"] == "json_schema"
    spec = response_format["json_schema"]
    assert (spec["name"], spec["strict"]) == ("agent_answer", True)
    schema = spec["schema"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"action", "confidence", "horizon", "reasons", "risk_flags"}
    assert schema["properties"]["reasons"]["maxItems"] == 3


def test_ask_when_usage_absent_then_ok_with_zero_tokens(
    llm_server: LlmServer, make_chat: MakeChat
) -> None:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "test-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer().content},
                "finish_reason": "stop",
            }
        ],
    }
    llm_server.script(Reply(raw_body=json.dumps(body)))

    reply, _ = ask(make_chat())

    assert reply.outcome is CallOutcome.OK
    assert (reply.tokens_in, reply.tokens_out) == (0, 0)


def test_ask_when_content_not_json_then_ok_and_read_answer_rejects_it(
    llm_server: LlmServer, make_chat: MakeChat
) -> None:
    llm_server.script(malformed())

    reply, _ = ask(make_chat())

    # The transport delivered an answer; judging it is core's job.
    assert reply.outcome is CallOutcome.OK
    assert reply.text == malformed().content
    with pytest.raises(InvalidAnswer, match=r"^answer: Invalid JSON"):
        read_answer("bull", reply.text)


@pytest.mark.parametrize(
    ("scripted", "expected_text", "expected_error"),
    [
        (refusal("I won't give trading advice."), "I won't give trading advice.", "won't give"),
        (Reply(content="", finish_reason="content_filter"), "", "content_filter"),
    ],
    ids=["refusal-message", "content-filter"],
)
def test_ask_when_model_refuses_then_refusal(
    llm_server: LlmServer,
    make_chat: MakeChat,
    scripted: Reply,
    expected_text: str,
    expected_error: str,
) -> None:
    llm_server.script(scripted)

    reply, _ = ask(make_chat())

    assert reply.outcome is CallOutcome.REFUSAL
    assert reply.text == expected_text
    assert expected_error in reply.error
    assert reply.attempts == 1  # a refusal is an answer: asking again would not change it


def test_ask_when_finish_reason_length_then_truncated_with_partial_text(
    llm_server: LlmServer, make_chat: MakeChat
) -> None:
    llm_server.script(truncated())

    reply, _ = ask(make_chat(max_output_tokens=16))

    assert reply.outcome is CallOutcome.TRUNCATED
    assert reply.text == truncated().content
    assert reply.finish_reason == "length"
    assert "16 tokens" in reply.error
    assert reply.tokens_out == 20


def test_ask_when_answer_slower_than_timeout_then_timeout_within_the_timeout(
    llm_server: LlmServer, make_chat: MakeChat
) -> None:
    llm_server.script(slow(3.0))

    reply, elapsed = ask(make_chat(max_attempts=1))

    assert reply.outcome is CallOutcome.TIMEOUT
    assert reply.attempts == 1
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + MARGIN_S
    assert "0.3s" in reply.error


def test_ask_when_deadline_nearer_than_timeout_then_the_deadline_bounds_the_attempt(
    llm_server: LlmServer, make_chat: MakeChat
) -> None:
    llm_server.script(slow(3.0))

    reply, elapsed = ask(make_chat(timeout_s=5.0), within_s=0.4)

    assert reply.outcome is CallOutcome.TIMEOUT
    assert reply.attempts == 1  # under 50 ms were left for a second one
    assert elapsed < 0.4 + MARGIN_S


def test_ask_when_rate_limited_once_then_retried_and_ok(
    llm_server: LlmServer, make_chat: MakeChat
) -> None:
    llm_server.script(status(429), answer())

    reply, _ = ask(make_chat())

    assert reply.outcome is CallOutcome.OK
    assert reply.attempts == 2
    assert len(llm_server.requests) == 2


def test_ask_when_retry_after_within_deadline_then_it_is_honoured(
    llm_server: LlmServer, make_chat: MakeChat
) -> None:
    llm_server.script(status(429, retry_after=0.3), answer())

    reply, elapsed = ask(make_chat(backoff_s=0.0))

    assert reply.outcome is CallOutcome.OK
    assert reply.attempts == 2
    assert elapsed >= 0.3


def test_ask_when_retry_after_beyond_deadline_then_rate_limited_without_waiting(
    llm_server: LlmServer, make_chat: MakeChat
) -> None:
    llm_server.script(status(429, "Rate limit reached for test-model", retry_after=30))

    reply, elapsed = ask(make_chat(), within_s=1.0)

    assert reply.outcome is CallOutcome.RATE_LIMITED
    assert reply.attempts == 1
    assert elapsed < 0.3  # gave up at once rather than sleep towards the deadline
    assert "HTTP 429: Rate limit reached for test-model" in reply.error
    assert "deadline" in reply.error


def test_ask_when_server_error_twice_then_ok_on_third_attempt(
    llm_server: LlmServer, make_chat: MakeChat
) -> None:
    llm_server.script(status(500), status(503), answer())

    reply, _ = ask(make_chat())

    assert reply.outcome is CallOutcome.OK
    assert reply.attempts == 3


def test_ask_when_server_error_persists_then_server_error_after_max_attempts(
    llm_server: LlmServer, make_chat: MakeChat
) -> None:
    llm_server.script(status(500, "the model crashed"))

    reply, _ = ask(make_chat(max_attempts=3))

    assert reply.outcome is CallOutcome.SERVER_ERROR
    assert reply.attempts == 3
    assert len(llm_server.requests) == 3
    assert reply.error == "HTTP 500: the model crashed"


def test_ask_when_backoff_would_pass_deadline_then_no_sleep_and_server_error(
    llm_server: LlmServer, make_chat: MakeChat
) -> None:
    llm_server.script(status(502))

    reply, elapsed = ask(make_chat(backoff_s=5.0), within_s=1.0)

    assert reply.outcome is CallOutcome.SERVER_ERROR
    assert reply.attempts == 1
    assert elapsed < 0.3


def test_ask_when_unauthorized_then_rejected_without_retry(
    llm_server: LlmServer, make_chat: MakeChat
) -> None:
    llm_server.script(status(401, "Incorrect API key provided"))

    reply, _ = ask(make_chat(api_key="sk-wrong"))

    assert reply.outcome is CallOutcome.REJECTED
    assert reply.attempts == 1
    assert len(llm_server.requests) == 1
    assert reply.error == "HTTP 401: Incorrect API key provided"


def test_ask_when_nothing_listens_then_unavailable_after_retries() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    chat = OpenAiChat(f"http://127.0.0.1:{port}/v1", "m", None, TIMEOUT_S, 64, backoff_s=0.01)

    reply, elapsed = ask(chat)

    assert reply.outcome is CallOutcome.UNAVAILABLE
    assert reply.attempts == 3
    assert reply.error.startswith("connection failed")
    assert elapsed < 1.0


@pytest.mark.parametrize(
    "scripted",
    [
        not_a_completion(),
        Reply(raw_body="<html>502 Bad Gateway</html>"),  # claims JSON, is not
        Reply(raw_body="upstream says hi", content_type="text/plain"),
        Reply(raw_body=json.dumps({"object": "chat.completion", "choices": []})),
    ],
    ids=["json-not-completion", "json-content-type-not-json", "text-plain", "no-choices"],
)
def test_ask_when_200_body_is_not_a_chat_completion_then_invalid(
    llm_server: LlmServer, make_chat: MakeChat, scripted: Reply
) -> None:
    llm_server.script(scripted)

    reply, _ = ask(make_chat())

    assert reply.outcome is CallOutcome.INVALID
    assert reply.attempts == 1
    assert reply.text == ""
    assert reply.error


def test_ask_when_deadline_already_passed_then_no_request_is_sent(
    llm_server: LlmServer, make_chat: MakeChat
) -> None:
    reply = make_chat().ask(SYSTEM, USER, time.monotonic() - 0.01, {})

    assert reply.outcome is CallOutcome.TIMEOUT
    assert reply.attempts == 0
    assert llm_server.requests == []


def test_ask_when_two_agents_ask_at_once_then_each_gets_its_own_answer(
    llm_server: LlmServer, make_chat: MakeChat
) -> None:
    def by_agent(request: dict[str, Any]) -> Reply:
        bull = "Bull" in request["messages"][0]["content"]
        return slow(0.1) if bull else answer(action="SELL")

    llm_server.answer_with(by_agent)
    chat = make_chat()
    replies: dict[str, ChatReply] = {}

    def run(agent: str) -> None:
        replies[agent] = ask(chat, system=f"You are the {agent} agent.")[0]

    threads = [threading.Thread(target=run, args=(a,)) for a in ("Bull", "Bear")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert json.loads(replies["Bull"].text)["action"] == "BUY"
    assert json.loads(replies["Bear"].text)["action"] == "SELL"
    assert len(llm_server.requests) == 2


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://127.0.0.1:8000/v1", "127.0.0.1:8000"),
        ("https://api.openai.com/v1", "api.openai.com"),
        ("https://user:secret@Example.COM:8443/v1/", "example.com:8443"),
        ("http://[::1]:11434/v1", "[::1]:11434"),
        ("localhost:8080/v1", "localhost:8080"),
    ],
)
def test_host_of_when_given_base_url_then_host_and_port_only(base_url: str, expected: str) -> None:
    assert host_of(base_url) == expected
