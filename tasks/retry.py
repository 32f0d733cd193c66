"""Retry only what can succeed on a second try; fatal errors fail the task at once."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import OperationalError

from core.ports import RetryableBrokerError
from infra.exchange_errors import RetryableExchangeError

# OperationalError: the database is unreachable for a moment; the work was not recorded and
# nothing was sent without being recorded first, so the task may run again.
RETRYABLE = (
    RetryableExchangeError,
    RetryableBrokerError,
    ConnectionError,
    TimeoutError,
    OperationalError,
)


def only_retryable(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except RETRYABLE:
        return True
    except Exception:
        return False
    return False
