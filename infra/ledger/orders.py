"""Decisions and the orders they approve; each method is one transaction."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from core.decision import Decision
from core.errors import FatalError
from core.holds import HoldDecider, HoldRows
from core.orders import InvalidTransition, Order, OrderChange, OrderEvent, OrderStatus
from core.records import DecisionRecord
from core.types import ClientOrderId, DecisionId
from infra.ledger.mappers import call_values, decision_of, decision_values, order_of, order_row
from infra.ledger.models import AgentCallRow, DecisionRow, OrderRow
from infra.ledger.news import decision_made_in, order_created_in, order_updated_in
from infra.ledger.sessions import Sessions

log = logging.getLogger(__name__)
_OPEN = [s.value for s in OrderStatus if s.is_open]


class UnknownOrder(FatalError):
    pass


# Oldest first; ties (one order per symbol at a candle) by id, as the in-memory ledger does.
_CREATION = (OrderRow.created_at, OrderRow.client_order_id)


# The reads a live decision makes, built once: building a select and its cache key cost
# three times what running it does (sessions.Sessions.rows).
_LAST_DECIDED = select(func.max(DecisionRow.candle_time)).where(
    DecisionRow.account == bindparam("account"),
    DecisionRow.symbol == bindparam("symbol"),
    DecisionRow.timeframe == bindparam("timeframe"),
)
_DECIDED_IDS = select(DecisionRow.decision_id).where(
    DecisionRow.account == bindparam("account"),
    DecisionRow.timeframe == bindparam("timeframe"),
    DecisionRow.candle_time >= bindparam("since"),
)
_INSERT_DECISION = insert(DecisionRow.__table__)
_ORDER = select(OrderRow).where(OrderRow.client_order_id == bindparam("client_order_id"))


@cache
def _orders(by_status: bool, by_symbol: bool, open_only: bool = False) -> Select[Any]:
    """An account's orders, oldest first; of a status, of a symbol, or still open."""
    q = select(OrderRow).where(OrderRow.account == bindparam("account"))
    if by_status:
        q = q.where(OrderRow.status == bindparam("status"))
    if open_only:
        q = q.where(OrderRow.status.in_(_OPEN))
    if by_symbol:
        q = q.where(OrderRow.symbol == bindparam("symbol"))
    return q.order_by(*_CREATION)


class Orders:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions
        self._held: Counter[str] = Counter()  # actions of the holds recorded, until asked

    def record_holds(self, rows: HoldRows, decide: HoldDecider, broker: str) -> None:
        """Each hold decided here and recorded as any decision is (its events included)."""
        for decision in decide.decisions(rows) if len(rows) else ():
            if self.record_decision(decision, broker):
                self._held[decision.consensus.action.value] += 1

    def hold_actions(self) -> Counter[str]:
        counts, self._held = self._held, Counter()
        return counts

    # -- decisions -------------------------------------------------------------------------
    def _has_decision(self, decision_id: DecisionId) -> bool:
        with self._sessions.read() as s:
            return s.get(DecisionRow, decision_id) is not None

    def record_decision(self, decision: Decision, broker: str) -> bool:
        """Store the decision and, if approved, its order (status NEW), together.

        Returns False, writing nothing, when this decision was already recorded.
        """
        try:
            with self._sessions.write() as s:
                # The row as a plain INSERT, before the order's and calls' (their foreign keys
                # need it): the ORM's flush of one object cost a third of recording it.
                s.execute(_INSERT_DECISION, decision_values(decision))
                if decision.calls:
                    rows = [call_values(decision.decision_id, c) for c in decision.calls]
                    s.execute(insert(AgentCallRow.__table__), rows)
                if decision.order is not None:
                    s.add(order_row(decision.order, decision.input.account, broker))
                decision_made_in(s, decision)
                if decision.order is not None:
                    order_created_in(
                        s, decision.order, decision.input.account, broker, decision.decided_at
                    )
        except IntegrityError:
            if self._has_decision(decision.decision_id):
                return False
            raise
        return True

    def decisions(self, account: str, since: datetime | None = None) -> list[DecisionRecord]:
        q = select(DecisionRow).where(DecisionRow.account == account)
        if since is not None:
            q = q.where(DecisionRow.candle_time >= since)
        with self._sessions.read() as s:
            rows = s.scalars(q.order_by(DecisionRow.candle_time, DecisionRow.symbol))
            return [decision_of(r) for r in rows]

    def decision(self, decision_id: str) -> DecisionRecord | None:
        with self._sessions.read() as s:
            row = s.get(DecisionRow, decision_id)
            return None if row is None else decision_of(row)

    def recent_decisions(
        self, account: str, symbol: str, timeframe: str, before: datetime, limit: int
    ) -> list[DecisionRecord]:
        """The newest `limit` decisions of a symbol on candles opening before `before`, oldest
        first."""
        q = (
            select(DecisionRow)
            .where(
                DecisionRow.account == account,
                DecisionRow.symbol == symbol,
                DecisionRow.timeframe == timeframe,
                DecisionRow.candle_time < before,
            )
            .order_by(DecisionRow.candle_time.desc())
            .limit(limit)
        )
        with self._sessions.read() as s:
            return [decision_of(r) for r in reversed(list(s.scalars(q)))]

    def last_decided(self, account: str, symbol: str, timeframe: str) -> datetime | None:
        """Open time of the newest candle decided for this symbol and timeframe."""
        return self._sessions.scalar(  # type: ignore[no-any-return]
            _LAST_DECIDED, {"account": account, "symbol": symbol, "timeframe": timeframe}
        )

    def decided_ids(self, account: str, timeframe: str, since: datetime) -> set[DecisionId]:
        """Ids of the decisions recorded for candles opening at or after `since`."""
        params = {"account": account, "timeframe": timeframe, "since": since}
        return {DecisionId(d) for (d,) in self._sessions.rows(_DECIDED_IDS, params)}

    # -- orders ----------------------------------------------------------------------------
    def get(self, client_order_id: ClientOrderId) -> Order | None:
        rows = self._sessions.rows(_ORDER, {"client_order_id": client_order_id})
        return order_of(rows[0]) if rows else None

    def find(
        self, account: str, status: OrderStatus | None = None, symbol: str | None = None
    ) -> list[Order]:
        q = _orders(by_status=status is not None, by_symbol=symbol is not None)
        params = {"account": account, "status": status and status.value, "symbol": symbol}
        return [order_of(r) for r in self._sessions.rows(q, params)]

    def open(self, account: str, symbol: str | None = None) -> list[Order]:
        """Orders not yet in a terminal state: they count against limits and can be cancelled."""
        q = _orders(by_status=False, by_symbol=symbol is not None, open_only=True)
        return [order_of(r) for r in self._sessions.rows(q, {"account": account, "symbol": symbol})]

    def insert_many(self, orders: Sequence[Order], account: str, broker: str) -> set[str]:
        """Record orders the safety layer places itself, in one transaction; returns the ids
        that were new (the others were stored by an earlier try)."""
        with self._sessions.write() as s:
            ids = [o.client_order_id for o in orders]
            known = set(
                s.scalars(select(OrderRow.client_order_id).where(OrderRow.client_order_id.in_(ids)))
            )
            fresh = [o for o in orders if o.client_order_id not in known]
            s.add_all(order_row(o, account, broker) for o in fresh)
            for o in fresh:
                order_created_in(s, o, account, broker, o.created_at)
        return {o.client_order_id for o in fresh}

    def apply(self, changes: Sequence[OrderChange], now: datetime) -> list[Order]:
        """Apply each change's events to its order, all in one transaction. A change its order
        refuses (InvalidTransition: a fill got there first, say) is logged and left out; the
        others are applied. Returns the orders as they are after their change."""
        out = []
        with self._sessions.write() as s:
            for change in changes:
                row = s.get(OrderRow, change.client_order_id, with_for_update=True)
                if row is None:
                    raise UnknownOrder(f"no order {change.client_order_id} in the ledger")
                try:
                    order = order_of(row)
                    for event in change.events:
                        order = order.apply(event)
                except InvalidTransition:
                    log.warning("refused order change %s", change, exc_info=True)
                    continue
                previous, previous_error = row.status, row.error
                row.status, row.updated_at = order.status.value, now
                row.error = change.error
                row.submit_attempts += int(change.sent)
                if (row.status, row.error) != (previous, previous_error):  # else: no news
                    order_updated_in(s, row, previous, now)
                out.append(order)
        return out

    def submit_attempts(self, client_order_id: ClientOrderId) -> int:
        with self._sessions.read() as s:
            row = s.get(OrderRow, client_order_id)
            if row is None:
                raise UnknownOrder(f"no order {client_order_id} in the ledger")
            return row.submit_attempts

    def claim_for_sending(self, client_order_id: ClientOrderId, now: datetime) -> bool:
        """Count a send attempt, if the order is still NEW (one statement: the kill switch
        cancelling an unsent order and a sender claiming it cannot both succeed)."""
        with self._sessions.write() as s:
            claimed = s.execute(
                update(OrderRow)
                .where(
                    OrderRow.client_order_id == client_order_id,
                    OrderRow.status == OrderStatus.NEW.value,
                )
                .values(submit_attempts=OrderRow.submit_attempts + 1, updated_at=now)
            ).rowcount
        return bool(claimed)

    def cancel_unsent(self, client_order_id: ClientOrderId, now: datetime, error: str) -> bool:
        """Cancel an order no sender has claimed yet (NEW, never attempted); False when one
        has: it may be on its way to the exchange."""
        with self._sessions.write() as s:
            cancelled = s.execute(
                update(OrderRow)
                .where(
                    OrderRow.client_order_id == client_order_id,
                    OrderRow.status == OrderStatus.NEW.value,
                    OrderRow.submit_attempts == 0,
                )
                .values(status=OrderStatus.CANCELLED.value, updated_at=now, error=error)
            ).rowcount
            if cancelled:
                row = s.get(OrderRow, client_order_id, populate_existing=True)
                assert row is not None  # just updated, in this transaction
                order_updated_in(s, row, OrderStatus.NEW.value, now)
        return bool(cancelled)

    def mark_submitted(self, client_order_id: ClientOrderId, now: datetime) -> Order | None:
        """Record that a claimed order reached the exchange, if nobody has yet: its sender and
        the kill switch (finding it there first) may both try; the second gets None."""
        with self._sessions.write() as s:
            row = s.get(OrderRow, client_order_id, with_for_update=True)
            if row is None:
                raise UnknownOrder(f"no order {client_order_id} in the ledger")
            if row.status != OrderStatus.NEW.value:
                return None
            order = order_of(row).apply(OrderEvent.SUBMIT)
            row.status, row.updated_at = order.status.value, now
            order_updated_in(s, row, OrderStatus.NEW.value, now)
            return order

    def transition(
        self,
        client_order_id: ClientOrderId,
        event: OrderEvent,
        now: datetime,
        error: str | None = None,
    ) -> Order:
        with self._sessions.write() as s:
            row = s.get(OrderRow, client_order_id, with_for_update=True)
            if row is None:
                raise UnknownOrder(f"no order {client_order_id} in the ledger")
            try:
                nxt = order_of(row).apply(event)
            except InvalidTransition:
                log.warning("refused order transition", exc_info=True)
                raise
            previous = row.status
            row.status, row.updated_at, row.error = nxt.status.value, now, error
            order_updated_in(s, row, previous, now)
            return nxt
