"""ccxt errors translated at the boundary into core.errors' exchange tree, most specific first.

ccxt's OperationFailed family (network, timeouts, DDoS/429, maintenance, an exchange's internal
error: the outcome may be unknown) is retryable; insufficient funds and invalid orders are order
rejections; every other ccxt error (bad symbol, authentication …) is fatal.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import ccxt

from core.errors import (
    FatalExchangeError,
    InsufficientFunds,
    OrderRejected,
    RetryableExchangeError,
)


@contextmanager
def ccxt_errors(operation: str) -> Iterator[None]:
    try:
        yield
    except ccxt.InsufficientFunds as exc:
        raise InsufficientFunds(_text(operation, exc)) from exc
    except ccxt.InvalidOrder as exc:
        raise OrderRejected(_text(operation, exc)) from exc
    except (ccxt.OperationFailed, ccxt.RateLimitExceeded) as exc:
        raise RetryableExchangeError(_text(operation, exc)) from exc
    except ccxt.BaseError as exc:
        raise FatalExchangeError(_text(operation, exc)) from exc


def _text(operation: str, exc: Exception) -> str:
    return f"{operation}: {type(exc).__name__}: {exc}"
