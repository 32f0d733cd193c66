"""The chat model behind the LLM agents: any OpenAI-compatible endpoint through the `openai` SDK.

Retries are ours, not the SDK's (max_retries=0): the SDK's retry loop knows nothing of the
decision's deadline, and an agent that answers after the decision is made is no use. `ask`
never raises for what a provider or the network can do; its ChatReply's outcome says what
happened. The answer is requested as a strict JSON schema, but not parsed here: not every
compatible server enforces the schema, so core.agents.answer.read_answer validates it again.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessage, ChatCompletionMessageParam
from openai.types.chat.chat_completion import Choice
from openai.types.shared_params import ResponseFormatJSONSchema

from core.agents.answer import AgentAnswer
from core.agents.calls import CallOutcome, ChatReply

# No attempt starts with less than this left: it could not finish, and would only cost tokens.
MIN_ATTEMPT_S = 0.05
_MAX_ERROR_CHARS = 300
_RETRIED = frozenset(
    {
        CallOutcome.TIMEOUT,
        CallOutcome.UNAVAILABLE,
        CallOutcome.RATE_LIMITED,
        CallOutcome.SERVER_ERROR,
    }
)


def host_of(base_url: str) -> str:
    """The base URL's host[:port] (lower case, no credentials), for the audit row."""
    parts = urlsplit(base_url if "://" in base_url else f"//{base_url}")
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal keeps its brackets, or the port would be ambiguous
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a malformed port: the host alone still identifies the endpoint
        port = None
    return f"{host}:{port}" if port is not None else host


def answer_format() -> ResponseFormatJSONSchema:
    """The response_format asking for a strict AgentAnswer. The schema comes from the SDK's
    public pydantic helper, so it is made strict the same way `.parse` would make it."""
    schema = openai.pydantic_function_tool(AgentAnswer)["function"]["parameters"]
    return {
        "type": "json_schema",
        "json_schema": {"name": "agent_answer", "strict": True, "schema": schema},
    }


@dataclass(frozen=True, slots=True)
class _Attempt:
    """What one request brought back."""

    outcome: CallOutcome
    text: str = ""
    finish_reason: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    error: str = ""
    retry_after_s: float | None = None  # what the provider asked us to wait, if it did


class OpenAiChat:
    """core.ports.ChatModel over one OpenAI-compatible endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        timeout_s: float,
        max_output_tokens: int,
        temperature: float = 0.0,
        max_attempts: int = 3,
        backoff_s: float = 0.25,
    ) -> None:
        if timeout_s <= 0 or max_output_tokens < 1 or max_attempts < 1 or backoff_s < 0:
            raise ValueError(
                f"timeout_s={timeout_s}, max_output_tokens={max_output_tokens}, "
                f"max_attempts={max_attempts}, backoff_s={backoff_s}: out of range"
            )
        self.model = model
        self.endpoint = host_of(base_url)
        self.timeout_s = timeout_s
        self.max_output_tokens = max_output_tokens
        self.temperature = temperature
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        # Local servers need no key, but the SDK refuses to start without one.
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", max_retries=0, timeout=timeout_s
        )
        self._format = answer_format()

    def ask(self, system: str, user: str, deadline: float, tags: Mapping[str, str]) -> ChatReply:
        """Ask once, retrying timeouts, connection errors, 429 and 5xx while `deadline`
        (a time.monotonic() instant) allows. `tags` are for a tracing wrapper, unused here."""
        started = time.monotonic()
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]
        last = _Attempt(CallOutcome.TIMEOUT, error="the deadline passed before any request")
        attempts = 0
        while attempts < self.max_attempts:
            left = deadline - time.monotonic()
            if left < MIN_ATTEMPT_S:
                break
            attempts += 1
            last = self._attempt(messages, min(self.timeout_s, left))
            if last.outcome not in _RETRIED or attempts == self.max_attempts:
                break
            wait = self._wait(attempts, last.retry_after_s)
            if time.monotonic() + wait + MIN_ATTEMPT_S > deadline:
                last = _with_note(last, f"no retry: a wait of {wait:g}s would pass the deadline")
                break
            time.sleep(wait)
        return ChatReply(
            outcome=last.outcome,
            text=last.text,
            finish_reason=last.finish_reason,
            tokens_in=last.tokens_in,
            tokens_out=last.tokens_out,
            latency_ms=(time.monotonic() - started) * 1000.0,
            attempts=attempts,
            error=last.error,
        )

    def _wait(self, attempts: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return max(0.0, retry_after_s)
        return self.backoff_s * 2 ** (attempts - 1)

    def _attempt(self, messages: list[ChatCompletionMessageParam], timeout_s: float) -> _Attempt:
        try:
            completion = self._client.chat.completions.create(
                model=self.model,
                messages=messages,
                # max_tokens, not max_completion_tokens: vLLM, llama.cpp and Ollama read it.
                max_tokens=self.max_output_tokens,
                temperature=self.temperature,
                seed=0,
                response_format=self._format,
                timeout=timeout_s,
            )
        except openai.APITimeoutError:
            return _Attempt(CallOutcome.TIMEOUT, error=f"no answer within {timeout_s:.3g}s")
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            return _Attempt(CallOutcome.UNAVAILABLE, error=_cut(f"connection failed: {cause}"))
        except openai.APIStatusError as exc:
            return _status_attempt(exc)
        except (openai.APIResponseValidationError, json.JSONDecodeError) as exc:
            return _Attempt(CallOutcome.INVALID, error=_cut(f"a 200 that is not JSON: {exc}"))
        except openai.OpenAIError as exc:  # anything else the SDK can raise: no answer
            return _Attempt(CallOutcome.UNAVAILABLE, error=_cut(f"{type(exc).__name__}: {exc}"))
        return _read_completion(completion, self.max_output_tokens)


def _status_attempt(exc: openai.APIStatusError) -> _Attempt:
    code = exc.status_code
    if code == 429:
        outcome = CallOutcome.RATE_LIMITED
    elif code >= 500:
        outcome = CallOutcome.SERVER_ERROR
    else:
        outcome = CallOutcome.REJECTED
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    text = str(message) if message else str(body or exc.message)
    return _Attempt(
        outcome,
        error=_cut(f"HTTP {code}: {text}"),
        retry_after_s=_retry_after(exc.response.headers),
    )


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the provider asks us to wait (retry-after-ms, or Retry-After in seconds or as
    an HTTP date), or None."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) / divisor
        except ValueError:
            pass
    value = headers.get("retry-after")
    when = email.utils.parsedate_tz(value) if value else None
    return None if when is None else email.utils.mktime_tz(when) - time.time()


def _read_completion(completion: object, max_tokens: int) -> _Attempt:
    """The outcome of a 200. The SDK builds its models without validating them, so a body
    that is not a chat completion shows up here as missing or mistyped fields."""
    choice = _first_choice(completion)
    if choice is None:
        shown = "no usable choice" if isinstance(completion, ChatCompletion) else "no JSON object"
        return _Attempt(CallOutcome.INVALID, error=f"a 200 that is not a chat completion: {shown}")
    message = choice.message
    content, refusal = message.content, message.refusal
    if not isinstance(content, str | None) or not isinstance(refusal, str | None):
        return _Attempt(CallOutcome.INVALID, error="a chat completion whose message is not text")
    finish = choice.finish_reason if isinstance(choice.finish_reason, str) else ""
    tokens_in, tokens_out = _usage(completion)
    reply = _Attempt(CallOutcome.OK, content or "", finish, tokens_in, tokens_out)
    if refusal or finish == "content_filter":
        why = refusal or "finish_reason=content_filter"
        text = refusal or content or ""
        return replace(reply, outcome=CallOutcome.REFUSAL, text=text, error=_cut(why))
    if finish == "length":  # the partial text is kept: the audit shows where it stopped
        cut = f"cut off at {max_tokens} tokens"
        return replace(reply, outcome=CallOutcome.TRUNCATED, error=cut)
    return reply


def _first_choice(completion: object) -> Choice | None:
    if not isinstance(completion, ChatCompletion):
        return None
    choices = completion.choices
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Choice):
        return None
    return choices[0] if isinstance(choices[0].message, ChatCompletionMessage) else None


def _usage(completion: object) -> tuple[int, int]:
    usage = getattr(completion, "usage", None)
    tokens_in = getattr(usage, "prompt_tokens", 0)
    tokens_out = getattr(usage, "completion_tokens", 0)
    return (
        tokens_in if isinstance(tokens_in, int) else 0,
        tokens_out if isinstance(tokens_out, int) else 0,
    )


def _with_note(attempt: _Attempt, note: str) -> _Attempt:
    # The provider's message is cut first so that the note always survives the cut.
    return replace(attempt, error=_cut(f"{attempt.error[:200]}; {note}"))


def _cut(text: str) -> str:
    return " ".join(text.split())[:_MAX_ERROR_CHARS]
