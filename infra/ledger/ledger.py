"""The ledger: every candle, decision, order, fill, position and safety event, in SQL.

A facade over one store per concern; each store method is one transaction that commits whole
or writes nothing. Built one way: `open_ledger(url)` (migrated once per process and URL).
"""

from __future__ import annotations

import threading
from functools import lru_cache

from sqlalchemy.exc import InterfaceError, OperationalError

from infra.ledger.accounts import Accounts
from infra.ledger.agent_calls import AgentCalls
from infra.ledger.alert_states import AlertStates
from infra.ledger.backtests import BacktestRuns
from infra.ledger.browse import Browse
from infra.ledger.candles import Candles
from infra.ledger.database import migrate, session_factory
from infra.ledger.drift import DriftChecks
from infra.ledger.events import Events
from infra.ledger.fills import Fills
from infra.ledger.microstructure import Microstructure
from infra.ledger.orders import Orders
from infra.ledger.overview import Overview
from infra.ledger.requests import SafetyRequests
from infra.ledger.safety import Safety
from infra.ledger.sessions import Sessions, translate
from infra.ledger.tokens import ApiTokens
from infra.ledger.webhooks import Webhooks


class Ledger:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions  # raw sessions, for tests of the schema's own constraints
        self.candles = Candles(sessions)
        self.accounts = Accounts(sessions)
        self.orders = Orders(sessions)
        self.fills = Fills(sessions)
        self.safety = Safety(sessions)
        self.requests = SafetyRequests(sessions)
        self.microstructure = Microstructure(sessions)
        self.overview = Overview(sessions)
        self.backtests = BacktestRuns(sessions)
        self.drift = DriftChecks(sessions)
        self.agent_calls = AgentCalls(sessions)
        self.events = Events(sessions)
        self.webhooks = Webhooks(sessions)
        self.alerts = AlertStates(sessions)
        self.browse = Browse(sessions)
        self.tokens = ApiTokens(sessions)


_MIGRATING = threading.Lock()


@lru_cache(maxsize=16)
def _migrated(url: str) -> Ledger:
    try:
        migrate(url)
    except (OperationalError, InterfaceError) as exc:  # unreachable (retry) or unusable (not)
        raise translate(exc) from exc
    return _unmigrated(url)  # one Ledger (one engine, one pool) per URL, migrated or not


def open_ledger(url: str, *, migrated: bool = True) -> Ledger:
    """The ledger at `url`. With `migrated` (the default) its schema is brought to the newest
    migration once per process and URL, even from mapped tasks running in threads; without,
    nothing is checked (the API's health must answer while the database is down)."""
    if not migrated:
        return _unmigrated(url)
    with _MIGRATING:
        return _migrated(url)


@lru_cache(maxsize=16)
def _unmigrated(url: str) -> Ledger:
    return Ledger(Sessions(session_factory(url)))


def forget_ledgers() -> None:
    """Drop the per-process cache (tests that reuse a URL for a new database)."""
    _migrated.cache_clear()
    _unmigrated.cache_clear()
