"""ccxt errors translated at the boundary: retryable (try again) versus fatal (stop and say)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import ccxt


class ExchangeError(Exception):
    pass


class RetryableExchangeError(ExchangeError):
    """Network trouble, timeouts, rate limits, maintenance: the same call may succeed later."""


class FatalExchangeError(ExchangeError):
    """Bad symbol, bad credentials, refused request: retrying cannot help."""


@contextmanager
def ccxt_errors(
    operation: str,
    retryable: type[Exception] = RetryableExchangeError,
    fatal: type[Exception] = FatalExchangeError,
) -> Iterator[None]:
    """ccxt's OperationFailed family (network, timeouts, DDoS/429, maintenance, an exchange's
    internal error: the outcome may be unknown) becomes `retryable`; every other ccxt error
    (bad symbol, authentication, insufficient funds, invalid order …) becomes `fatal`."""
    try:
        yield
    except (ccxt.OperationFailed, ccxt.RateLimitExceeded) as exc:
        raise retryable(f"{operation}: {type(exc).__name__}: {exc}") from exc
    except ccxt.BaseError as exc:
        raise fatal(f"{operation}: {type(exc).__name__}: {exc}") from exc
