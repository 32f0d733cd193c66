"""Accounts: starting cash and the cash the fills leave."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, bindparam, select

from core.errors import FatalError
from infra.ledger.dialect import insert_for
from infra.ledger.models import AccountRow, HoldingRow
from infra.ledger.sessions import Sessions


class UnknownAccount(FatalError):
    pass


# Read at every live decision: built once (infra.ledger.orders says why).
_ACCOUNT = select(AccountRow).where(AccountRow.account == bindparam("account"))


class Accounts:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def ensure(
        self,
        account: str,
        starting_cash: Decimal,
        now: datetime,
        holdings: Mapping[str, Decimal] | None = None,
    ) -> bool:
        """Create the account once, with what the exchange account already held (not ours to
        trade); safe when several workers start at the same moment. True when created now."""
        with self._sessions.write() as s:
            insert = insert_for(s)
            stmt = insert(AccountRow).values(
                account=account,
                starting_cash=starting_cash,
                cash=starting_cash,
                updated_at=now,
                opened_at=now,
            )
            created = bool(s.execute(
                stmt.on_conflict_do_nothing(index_elements=["account"]).returning(AccountRow.account)
            ).all())  # fmt: skip
            if created and holdings:
                rows = [
                    {"account": account, "asset": a, "quantity": q, "recorded_at": now}
                    for a, q in sorted(holdings.items())
                ]
                s.execute(insert(HoldingRow).values(rows))
        return created

    def opened_at(self, account: str) -> datetime | None:
        """When the system first started on this account: what the exchange did before is
        not ours to reconcile."""
        return self._row(account).opened_at

    def names(self) -> list[str]:
        with self._sessions.read() as s:
            return list(s.scalars(select(AccountRow.account).order_by(AccountRow.account)))

    def holdings(self, account: str) -> dict[str, Decimal]:
        """What the exchange account held when the system first started on it, per asset."""
        with self._sessions.read() as s:
            rows = s.scalars(select(HoldingRow).where(HoldingRow.account == account))
            return {r.asset: r.quantity for r in rows}

    def cash(self, account: str) -> Decimal:
        return self._row(account).cash

    def starting_cash(self, account: str) -> Decimal:
        return self._row(account).starting_cash

    def _row(self, account: str) -> Row[Any]:
        rows = self._sessions.rows(_ACCOUNT, {"account": account})
        if not rows:
            raise UnknownAccount(f"unknown account {account!r}")
        return rows[0]
