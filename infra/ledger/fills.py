"""Fills, and the positions and cash they move; each method is one transaction."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import Integer, Select, bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.orders import Fill, InvalidTransition
from core.portfolio import Position, apply_fill, cash_after
from core.risk.breaker import TradeResult
from core.types import ClientOrderId, Side, Symbol
from infra.ledger.accounts import UnknownAccount
from infra.ledger.mappers import order_of
from infra.ledger.models import AccountRow, FillRow, OrderRow, PositionRow
from infra.ledger.news import fill_recorded_in, order_updated_in, position_changed_in
from infra.ledger.orders import UnknownOrder
from infra.ledger.sessions import Sessions

log = logging.getLogger(__name__)
ZERO = Decimal(0)


def _announce(
    s: Session,
    account: str,
    fill: Fill,
    realised: Decimal,
    order_row: OrderRow,
    previous: str,
    pos_row: PositionRow,
) -> None:
    """The fill's events, in the fill's transaction: the fill, its order's new state, the
    position it moved; all correlated by the order's decision (None for the safety layer's)."""
    decision_id = order_row.decision_id
    fill_recorded_in(s, account, fill, realised, decision_id)
    order_updated_in(s, order_row, previous, fill.filled_at)
    position_changed_in(s, pos_row, fill.filled_at, decision_id)


# The reads a live decision makes, built once (infra.ledger.orders says why).
@cache
def _history(after: bool, until: bool) -> Select[Any]:
    """An account's fills in (after, until], oldest first."""
    q = select(FillRow).where(FillRow.account == bindparam("account"))
    if after:
        q = q.where(FillRow.filled_at > bindparam("after"))
    if until:
        q = q.where(FillRow.filled_at <= bindparam("until"))
    return q.order_by(FillRow.filled_at, FillRow.fill_id)


_COUNT = select(func.count()).select_from(FillRow).where(FillRow.account == bindparam("account"))
_COUNT_UNTIL = _COUNT.where(FillRow.filled_at <= bindparam("until"))
_POSITIONS = select(PositionRow).where(PositionRow.account == bindparam("account"))
_CLOSED_COLUMNS = select(FillRow.filled_at, FillRow.realised_pnl, FillRow.price, FillRow.quantity)
_SELLS = _CLOSED_COLUMNS.where(
    FillRow.account == bindparam("account"), FillRow.side == Side.SELL.value
)
_NEWEST_FIRST = (FillRow.filled_at.desc(), FillRow.fill_id.desc())
_CLOSED = _SELLS.order_by(*_NEWEST_FIRST).limit(bindparam("limit", type_=Integer))
_CLOSED_UNTIL = (
    _SELLS.where(FillRow.filled_at <= bindparam("until"))
    .order_by(*_NEWEST_FIRST)
    .limit(bindparam("limit", type_=Integer))
)


class Fills:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def record(self, account: str, fill: Fill) -> bool:
        """Apply a fill to order, position and cash in one transaction; False if already seen."""
        try:
            with self._sessions.write() as s:
                if s.get(FillRow, fill.fill_id) is not None:
                    return False
                realised = self._apply(s, account, fill)
                s.add(
                    FillRow(
                        fill_id=fill.fill_id,
                        client_order_id=fill.client_order_id,
                        account=account,
                        symbol=fill.symbol,
                        side=fill.side.value,
                        quantity=fill.quantity,
                        price=fill.price,
                        fee=fill.fee,
                        realised_pnl=realised,
                        filled_at=fill.filled_at,
                        fee_in_base=fill.fee_in_base,
                    )
                )
        except IntegrityError:
            return False  # a concurrent writer stored the same fill id
        return True

    @staticmethod
    def _apply(s: Session, account: str, fill: Fill):  # type: ignore[no-untyped-def]
        """Move the order, the position and the cash; return the fill's realised P&L."""
        order_row = s.get(OrderRow, fill.client_order_id, with_for_update=True)
        if order_row is None:
            raise UnknownOrder(f"fill {fill.fill_id} for unknown order {fill.client_order_id}")
        try:
            order = order_of(order_row).fill(fill.quantity, fill.price)
        except InvalidTransition:
            log.warning("refused fill %s", fill.fill_id, exc_info=True)
            raise
        acct = s.get(AccountRow, account, with_for_update=True)
        if acct is None:
            raise UnknownAccount(f"unknown account {account!r}")
        pos_row = s.get(PositionRow, (account, fill.symbol), with_for_update=True)
        if pos_row is None:
            pos_row = PositionRow(
                account=account,
                symbol=fill.symbol,
                quantity=ZERO,
                avg_price=ZERO,
                realised_pnl=ZERO,
            )
            s.add(pos_row)
        current = Position(fill.symbol, pos_row.quantity, pos_row.avg_price, pos_row.realised_pnl)
        new_pos, realised = apply_fill(current, fill)
        acct.cash, acct.updated_at = cash_after(acct.cash, fill), fill.filled_at
        pos_row.quantity, pos_row.avg_price = new_pos.quantity, new_pos.avg_price
        pos_row.realised_pnl, pos_row.updated_at = new_pos.realised_pnl, fill.filled_at
        previous = order_row.status
        order_row.status, order_row.updated_at = order.status.value, fill.filled_at
        order_row.filled_quantity, order_row.filled_cost = order.filled_quantity, order.filled_cost
        _announce(s, account, fill, realised, order_row, previous, pos_row)
        return realised

    def history(
        self, account: str, after: datetime | None = None, until: datetime | None = None
    ) -> list[Fill]:
        """Fills in (after, until], oldest first."""
        q = _history(after is not None, until is not None)
        rows = self._sessions.rows(q, {"account": account, "after": after, "until": until})
        return [
            Fill(
                ClientOrderId(r.client_order_id),
                Symbol(r.symbol),
                Side(r.side),
                r.quantity,
                r.price,
                r.fee,
                r.filled_at,
                r.fill_id,
                r.fee_in_base,
            )
            for r in rows
        ]

    def count(self, account: str, until: datetime | None = None) -> int:
        q = _COUNT_UNTIL if until is not None else _COUNT
        return self._sessions.scalar(q, {"account": account, "until": until}) or 0

    def positions(self, account: str) -> dict[Symbol, Position]:
        rows = self._sessions.rows(_POSITIONS, {"account": account})
        return {
            Symbol(r.symbol): Position(Symbol(r.symbol), r.quantity, r.avg_price, r.realised_pnl)
            for r in rows
        }

    def closed_trades(
        self, account: str, until: datetime | None = None, limit: int = 500
    ) -> list[TradeResult]:
        """The newest closing (sell) fills with their realised P&L, oldest first."""
        q = _CLOSED_UNTIL if until is not None else _CLOSED
        rows = self._sessions.rows(q, {"account": account, "until": until, "limit": limit})
        return [TradeResult(t, pnl, price * qty) for t, pnl, price, qty in reversed(rows)]
