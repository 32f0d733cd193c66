"""Retry only what can succeed on a second try; fatal errors fail the task at once."""

from __future__ import annotations

from typing import Any

from core.ports import RetryableBrokerError
from infra.exchange_errors import RetryableExchangeError

RETRYABLE = (RetryableExchangeError, RetryableBrokerError, ConnectionError, TimeoutError)


def only_retryable(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except RETRYABLE:
        return True
    except Exception:
        return False
    return False
