"""Accounts: starting cash and the cash the fills leave."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from core.errors import FatalError
from infra.ledger.dialect import insert_for
from infra.ledger.models import AccountRow
from infra.ledger.sessions import Sessions


class UnknownAccount(FatalError):
    pass


class Accounts:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def ensure(self, account: str, starting_cash: Decimal, now: datetime) -> None:
        """Create the account once; safe when several workers start at the same moment."""
        with self._sessions.write() as s:
            stmt = insert_for(s)(AccountRow).values(
                account=account, starting_cash=starting_cash, cash=starting_cash, updated_at=now
            )
            s.execute(stmt.on_conflict_do_nothing(index_elements=["account"]))

    def cash(self, account: str) -> Decimal:
        return self._row(account).cash

    def starting_cash(self, account: str) -> Decimal:
        return self._row(account).starting_cash

    def _row(self, account: str) -> AccountRow:
        with self._sessions.read() as s:
            row = s.get(AccountRow, account)
        if row is None:
            raise UnknownAccount(f"unknown account {account!r}")
        return row
