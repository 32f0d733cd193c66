"""Retry only what can succeed on a second try; fatal errors fail the task at once."""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE
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


# I/O tasks (exchange, broker, ledger): retried with backoff and jitter on retryable errors
# only, and never cached, since a cached result would hide work that must really happen.
IO_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": [2, 5, 15],
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": only_retryable,
    "cache_policy": NO_CACHE,
}
