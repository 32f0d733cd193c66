"""Retry only what can succeed on a second try; everything else fails the task at once.

This is the one retry layer: adapters translate their errors into core.errors and never retry
themselves, so a page of candles or an order is tried at most `retries + 1` times in all.
"""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE

from core.errors import RetryableError


def only_retryable(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except RetryableError:
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
