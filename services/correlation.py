"""The correlation id of the work in hand: one decision's id follows it to its order, the order's
fills and the webhook deliveries of those events; an API request's id follows everything the
request does (a kill switch's closing orders included).

Kept in structlog's context variables, so every log line written while it is bound carries it
(infra/logging.py renders it), in the thread or task that bound it and in those it starts
(Prefect task threads and Starlette's thread pool copy the context). Binding costs a
ContextVar.set and its reset: cheap enough for a backtest's hundreds of thousands of decisions.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from contextlib import AbstractContextManager

from structlog.contextvars import bind_contextvars, reset_contextvars

CORRELATION_ID = "correlation_id"


def _structlog_var(key: str) -> contextvars.ContextVar[object]:
    """structlog's own ContextVar for `key` (what merge_contextvars reads), found through the
    token of a bind undone at once: reading it is one get, where get_contextvars() walks the
    whole context."""
    tokens = bind_contextvars(**{key: None})
    reset_contextvars(**tokens)
    return tokens[key].var


_CORRELATION = _structlog_var(CORRELATION_ID)


def correlation_id() -> str | None:
    """The id bound here now (by `bound`, or by structlog's bind_contextvars), else None."""
    value = _CORRELATION.get()
    # structlog marks an unbound key with Ellipsis (its default and clear_contextvars' value).
    return None if value is Ellipsis or value is None else str(value)


def bound(correlation_id: str | None = None, **others: object) -> Bound:
    """Bind the correlation id (and any other key/values) for a `with` block, restoring what
    was bound before on the way out, however the block ends. A None value binds nothing: an
    order with no decision (the kill switch's) keeps the id of the request that placed it."""
    return Bound(correlation_id, {k: v for k, v in others.items() if v is not None})


class Bound(AbstractContextManager[None]):
    """`bound`'s context manager: a class and one ContextVar.set for the id (under 1 us, half
    a generator over bind_contextvars: a backtest pays it per decision)."""

    __slots__ = ("_others", "_token", "_tokens", "_value")

    def __init__(self, value: str | None, others: Mapping[str, object]) -> None:
        self._value, self._others = value, others
        self._token: contextvars.Token[object] | None = None
        self._tokens: Mapping[str, contextvars.Token[object]] = {}

    def __enter__(self) -> None:
        if self._value is not None:
            self._token = _CORRELATION.set(self._value)
        if self._others:
            self._tokens = bind_contextvars(**self._others)

    def __exit__(self, *_: object) -> None:
        if self._tokens:
            reset_contextvars(**self._tokens)
        if self._token is not None:
            _CORRELATION.reset(self._token)
