"""One error tree for the whole system: what may succeed when tried again, and what may not.

Adapters translate their library's errors into these once, at the boundary (ccxt in
infra/exchange_errors.py, SQLAlchemy in infra/ledger/sessions.py), so a retry policy asks one
question: is it a RetryableError? Everything else fails at once with its message.
"""

from __future__ import annotations


class TradeflowError(Exception):
    """Base of every error this system raises on purpose."""


class RetryableError(TradeflowError):
    """The same call may succeed later: network trouble, a timeout, a rate limit, a database
    that is briefly unreachable. Nothing half-done was written."""


class FatalError(TradeflowError):
    """Retrying the same call cannot help: a person or a new decision must act."""


class ExchangeError(TradeflowError):
    """What an exchange (market data or broker) answered, or failed to answer."""


class RetryableExchangeError(ExchangeError, RetryableError):
    """Network, timeout, 429, maintenance, the exchange's internal error: the outcome of an
    order may be unknown, so look it up by its client id before sending it again."""


class FatalExchangeError(ExchangeError, FatalError):
    """Bad symbol, bad credentials, a refused request."""


class OrderRejected(FatalExchangeError):
    """The exchange refused this order (invalid amount, price, type …)."""


class InsufficientFunds(OrderRejected):
    """Not enough balance for this order."""


class LedgerUnavailable(RetryableError):
    """The ledger's database did not answer (connection refused or lost, locked, timed out)."""


class LedgerMisconfigured(FatalError):
    """The ledger's database cannot be used as configured (it does not exist, bad password,
    a path that cannot be opened): retrying will not fix it."""


class SignatureReplayed(FatalError):
    """A signed safety request whose signature was accepted before."""


class ConfigurationError(FatalError):
    """A setting or a combination of settings the system refuses to run with."""
