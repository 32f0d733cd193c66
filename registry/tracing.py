"""MLflow Tracing of the agents' chat calls: one trace per call, tagged with its decision.

The MLflow UI's Traces view shows each debate call by call (filter on `tags.decision_id`); the
ledger stays the source of truth for replay, so tracing is best effort: whatever MLflow's
tracing raises is logged as a warning, and the call's reply is returned all the same.

The calls run in the debate's worker threads, which inherit no span context: each call opens
its own span, which MLflow makes the root of a new trace, and tags that trace itself. The span
is the current span of its thread while the inner model runs, so spans an instrumented client
opens (mlflow.openai.autolog) become its children, not traces of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import mlflow
from mlflow.entities import SpanType
from mlflow.tracing.constant import SpanAttributeKey, TokenUsageKey

from core.agents.calls import ChatReply
from core.ports import ChatModel

log = logging.getLogger(__name__)


class TracedChat:
    """A ChatModel whose every call is an MLflow trace (span type CHAT_MODEL) tagged with the
    call's tags (decision_id, agent, round)."""

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.model = inner.model
        self.endpoint = inner.endpoint

    def ask(self, system: str, user: str, deadline: float, tags: Mapping[str, str]) -> ChatReply:
        inputs = {"model": self.model, "system": system, "user": user}
        with _CallSpan(span_name(tags), inputs, tags) as span:
            reply = self.inner.ask(system, user, deadline, tags)
            span.record(reply)
        return reply


def span_name(tags: Mapping[str, str]) -> str:
    if "agent" in tags and "round" in tags:
        return f"{tags['agent']} round {tags['round']}"
    return "chat"


def flush_traces() -> None:
    """Wait for the traces MLflow still writes in the background (call at the end of a run)."""
    try:
        mlflow.flush_trace_async_logging()
    except Exception as exc:  # best effort, like every trace
        _warn("flush traces", exc)


class _CallSpan:
    """One call's span, current in this thread while it is open. Never raises an error of its
    own; an error of the traced code is recorded on the span and passes through."""

    def __init__(self, name: str, inputs: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        self.name, self.inputs = name, dict(inputs)
        self.tags = {str(k): str(v) for k, v in tags.items()}
        self._context: Any = None
        self._span: Any = None

    def __enter__(self) -> _CallSpan:
        try:
            context = mlflow.start_span(name=self.name, span_type=SpanType.CHAT_MODEL)
            self._span = context.__enter__()
            self._context = context
            self._span.set_inputs(self.inputs)
            mlflow.update_current_trace(tags=self.tags)
        except Exception as exc:
            _warn(f"start the span of {self.name}", exc)
            self._close(None, None, None)
        return self

    def record(self, reply: ChatReply) -> None:
        if self._span is None:
            return
        try:
            self._span.set_outputs(_outputs(reply))
            self._span.set_attribute(SpanAttributeKey.CHAT_USAGE, _usage(reply))
            # Not an exception, but no answer: the trace shows as failed in the Traces view.
            self._span.set_status("OK" if reply.outcome.answered else "ERROR")
        except Exception as exc:
            _warn(f"record the reply on {self.name}", exc)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._close(exc_type, exc, tb)
        return False  # the traced code's own error, if any, goes on to the caller

    def _close(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        context, self._context, self._span = self._context, None, None
        if context is None:
            return
        try:
            context.__exit__(exc_type, exc, tb)  # records `exc` on the span, ends it
        except Exception as error:
            if error is not exc:  # MLflow's own failure (the traced error passes on anyway)
                _warn(f"end the span of {self.name}", error)


def _outputs(reply: ChatReply) -> dict[str, Any]:
    return {
        "outcome": reply.outcome.value,
        "text": reply.text,
        "finish_reason": reply.finish_reason,
        "tokens_in": reply.tokens_in,
        "tokens_out": reply.tokens_out,
        "latency_ms": reply.latency_ms,
        "attempts": reply.attempts,
        "error": reply.error,
    }


def _usage(reply: ChatReply) -> dict[str, int]:
    """Token usage in MLflow's shape, so the Traces view shows it per call and per trace."""
    return {
        TokenUsageKey.INPUT_TOKENS: reply.tokens_in,
        TokenUsageKey.OUTPUT_TOKENS: reply.tokens_out,
        TokenUsageKey.TOTAL_TOKENS: reply.tokens_in + reply.tokens_out,
    }


def _warn(what: str, exc: BaseException) -> None:
    kind = type(exc).__name__
    log.warning(
        "MLflow tracing could not %s (ignored: the ledger keeps the call): %s: %s", what, kind, exc
    )
