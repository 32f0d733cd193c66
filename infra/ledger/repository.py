"""The ledger: every candle, decision, order, fill, position and safety event, in SQL.

Each public method is one transaction: it commits whole or writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.candles.gaps import Gap
from core.decision import Decision
from core.features.order_book import BOOK_FEATURE_NAMES
from core.orders import (
    Fill,
    InvalidTransition,
    Order,
    OrderEvent,
    OrderOrigin,
    OrderStatus,
    OrderType,
)
from core.portfolio import Position, apply_fill, cash_after
from core.risk.breaker import TradeResult
from core.risk.state import (
    HaltCause,
    SafetyFlags,
    StateChange,
    TradingState,
    effective_state,
)
from core.types import ClientOrderId, DecisionId, Side, Symbol, to_decimal
from infra.ledger.dialect import insert_for
from infra.ledger.microstructure import MicrostructureStore
from infra.ledger.models import (
    AccountRow,
    CandleGapRow,
    CandleRow,
    DecisionRow,
    FillRow,
    KillSwitchEventRow,
    OrderRow,
    PositionRow,
    SafetyEventRow,
    SafetyStateRow,
    UsedSignatureRow,
)

log = logging.getLogger(__name__)

KILL_SWITCH = "kill_switch"
CIRCUIT_BREAKER = "circuit_breaker"
RECONCILIATION = "reconciliation"  # active: not yet reconciled since start, or differences found
TRADING_STATE = "trading_state"  # safety_events only: each change of the effective state
OPERATOR = "operator"  # reason holds the state an operator asked for (reducing, halted)
_CANDLE_BATCH = 2000


class LedgerError(Exception):
    pass


class UnknownOrder(LedgerError):
    pass


class StoredCandleConflict(LedgerError):
    """An incoming candle differs from the real candle already stored at that time."""

    def __init__(
        self,
        source: str,
        symbol: str,
        timeframe: str,
        stored: CandleRow,
        incoming: dict[str, object],
    ) -> None:
        at = datetime.fromtimestamp(stored.open_time_ms / 1000, tz=UTC).isoformat()
        old = {c: str(getattr(stored, c)) for c in _CANDLE_VALUES}
        new = {c: str(incoming[c]) for c in _CANDLE_VALUES}
        super().__init__(
            f"{source}: {symbol} {timeframe} candle at {at} conflicts with the stored one: "
            f"stored {old}, incoming {new}; nothing of this batch was stored"
        )


_CANDLE_VALUES = ("open", "high", "low", "close", "volume")


def _differs(stored: CandleRow, incoming: dict[str, object]) -> bool:
    return any(getattr(stored, c) != incoming[c] for c in _CANDLE_VALUES)


class SignatureReplayed(LedgerError):
    pass


@dataclass(frozen=True, slots=True)
class KillSwitchState:
    active: bool
    reason: str | None
    changed_at: datetime | None


class Ledger:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory
        self.microstructure = MicrostructureStore(factory)

    # -- health ----------------------------------------------------------------------------
    def ping(self) -> None:
        with self._factory() as s:
            s.execute(select(1))

    # -- candles ---------------------------------------------------------------------------
    def upsert_candles(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        frame: pd.DataFrame,
        gaps: Sequence[Gap] = (),
        gap_policy: str = "keep",
        source: str = "",
        now: datetime | None = None,
    ) -> int:
        """Store new candles and the gaps found, in one transaction; return how many were new.

        Idempotent: a candle already stored with the same values is skipped. A real candle
        replaces a synthetic (ffill) one at its time. One that differs from a stored real candle
        raises StoredCandleConflict and nothing of the batch is written.
        """
        filled = frame["is_filled"] if "is_filled" in frame else [False] * len(frame)
        ms = frame["open_time"].astype("int64") // 1_000_000
        rows = [
            {
                "exchange": exchange,
                "symbol": symbol,
                "timeframe": timeframe,
                "open_time_ms": int(t),
                "open": to_decimal(float(o)),
                "high": to_decimal(float(h)),
                "low": to_decimal(float(lo)),
                "close": to_decimal(float(c)),
                "volume": to_decimal(float(v)),
                "is_filled": bool(f),
            }
            for t, o, h, lo, c, v, f in zip(
                ms,
                frame["open"],
                frame["high"],
                frame["low"],
                frame["close"],
                frame["volume"],
                filled,
                strict=True,
            )
        ]
        key = (
            CandleRow.exchange == exchange,
            CandleRow.symbol == symbol,
            CandleRow.timeframe == timeframe,
        )
        inserted = 0
        with self._factory() as s, s.begin():
            if rows:
                stored = {
                    r.open_time_ms: r
                    for r in s.scalars(
                        select(CandleRow).where(
                            *key,
                            CandleRow.open_time_ms >= rows[0]["open_time_ms"],
                            CandleRow.open_time_ms <= rows[-1]["open_time_ms"],
                        )
                    )
                }
                fresh = []
                for row in rows:
                    old = stored.get(row["open_time_ms"])
                    if old is None:
                        fresh.append(row)
                    elif old.is_filled and not row["is_filled"]:
                        for col in _CANDLE_VALUES:  # the real candle arrived after all
                            setattr(old, col, row[col])
                        old.is_filled = False
                    elif not old.is_filled and _differs(old, row):
                        raise StoredCandleConflict(source or exchange, symbol, timeframe, old, row)
                insert = insert_for(s)
                for first in range(0, len(fresh), _CANDLE_BATCH):
                    stmt = insert(CandleRow).values(fresh[first : first + _CANDLE_BATCH])
                    stmt = stmt.on_conflict_do_nothing(
                        index_elements=["exchange", "symbol", "timeframe", "open_time_ms"]
                    ).returning(CandleRow.id)
                    # rowcount is -1 for this statement on psycopg; RETURNING counts exactly.
                    inserted += len(s.execute(stmt).all())
            for gap in gaps:
                first_ms = int(gap.first_missing.timestamp() * 1000)
                if (
                    s.scalar(
                        select(CandleGapRow.id).where(
                            CandleGapRow.exchange == exchange,
                            CandleGapRow.symbol == symbol,
                            CandleGapRow.timeframe == timeframe,
                            CandleGapRow.first_missing_ms == first_ms,
                        )
                    )
                    is None
                ):
                    s.add(
                        CandleGapRow(
                            exchange=exchange,
                            symbol=symbol,
                            timeframe=timeframe,
                            first_missing_ms=first_ms,
                            last_missing_ms=int(gap.last_missing.timestamp() * 1000),
                            missing=gap.missing,
                            policy=gap_policy,
                            source=source,
                            detected_at=now or datetime.now(tz=UTC),
                        )
                    )
        return inserted

    def candle_gaps(self, exchange: str, symbol: str, timeframe: str) -> list[CandleGapRow]:
        with self._factory() as s:
            return list(
                s.scalars(
                    select(CandleGapRow)
                    .where(
                        CandleGapRow.exchange == exchange,
                        CandleGapRow.symbol == symbol,
                        CandleGapRow.timeframe == timeframe,
                    )
                    .order_by(CandleGapRow.first_missing_ms)
                )
            )

    def last_candle_time(self, exchange: str, symbol: str, timeframe: str) -> datetime | None:
        with self._factory() as s:
            ms = s.scalar(
                select(func.max(CandleRow.open_time_ms)).where(
                    CandleRow.exchange == exchange,
                    CandleRow.symbol == symbol,
                    CandleRow.timeframe == timeframe,
                )
            )
        return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)

    def count_candles(self, exchange: str, symbol: str, timeframe: str) -> int:
        with self._factory() as s:
            return (
                s.scalar(
                    select(func.count())
                    .select_from(CandleRow)
                    .where(
                        CandleRow.exchange == exchange,
                        CandleRow.symbol == symbol,
                        CandleRow.timeframe == timeframe,
                    )
                )
                or 0
            )

    def load_candles(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        *,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """The newest `limit` candles up to `until` (inclusive), oldest first, as floats."""
        q = select(
            CandleRow.open_time_ms,
            CandleRow.open,
            CandleRow.high,
            CandleRow.low,
            CandleRow.close,
            CandleRow.volume,
            CandleRow.is_filled,
        ).where(
            CandleRow.exchange == exchange,
            CandleRow.symbol == symbol,
            CandleRow.timeframe == timeframe,
        )
        if until is not None:
            q = q.where(CandleRow.open_time_ms <= int(until.timestamp() * 1000))
        q = q.order_by(CandleRow.open_time_ms.desc())
        if limit is not None:
            q = q.limit(limit)
        with self._factory() as s:
            rows = s.execute(q).all()
        frame = pd.DataFrame(
            rows[::-1],
            columns=["open_time", "open", "high", "low", "close", "volume", "is_filled"],
        )
        frame["open_time"] = pd.to_datetime(frame["open_time"].astype("int64"), unit="ms", utc=True)
        for col in _CANDLE_VALUES:
            frame[col] = frame[col].astype("float64")
        frame["is_filled"] = frame["is_filled"].astype(bool)
        return frame

    # -- accounts --------------------------------------------------------------------------
    def ensure_account(self, account: str, starting_cash: Decimal, now: datetime) -> None:
        """Create the account once; safe when several workers start at the same moment."""
        with self._factory() as s, s.begin():
            stmt = insert_for(s)(AccountRow).values(
                account=account, starting_cash=starting_cash, cash=starting_cash, updated_at=now
            )
            s.execute(stmt.on_conflict_do_nothing(index_elements=["account"]))

    def cash(self, account: str) -> Decimal:
        with self._factory() as s:
            row = s.get(AccountRow, account)
            if row is None:
                raise LedgerError(f"unknown account {account!r}")
            return row.cash

    def starting_cash(self, account: str) -> Decimal:
        with self._factory() as s:
            row = s.get(AccountRow, account)
            if row is None:
                raise LedgerError(f"unknown account {account!r}")
            return row.starting_cash

    # -- decisions and orders --------------------------------------------------------------
    def has_decision(self, decision_id: DecisionId) -> bool:
        with self._factory() as s:
            return s.get(DecisionRow, decision_id) is not None

    def record_decision(self, decision: Decision, broker: str) -> bool:
        """Store the decision and, if approved, its order (status NEW), together.

        Returns False, writing nothing, when this decision was already recorded.
        """
        inp = decision.input
        verdict = decision.verdict
        order = decision.order
        row = DecisionRow(
            decision_id=decision.decision_id,
            account=inp.account,
            symbol=inp.symbol,
            timeframe=inp.timeframe,
            candle_time=inp.candle_time,
            price=inp.price,
            feature_set_version=inp.feature_set_version,
            model_name=inp.model_name,
            model_version=inp.model_version,
            probability=float(inp.model_probability),
            votes=[
                {
                    "agent": v.agent,
                    "action": v.action.value,
                    "confidence": v.confidence,
                    "reason": v.reason,
                }
                for v in decision.votes
            ],
            order_book_features={
                k: float(inp.features[k]) for k in BOOK_FEATURE_NAMES if k in inp.features
            }
            or None,
            action=decision.consensus.action.value,
            score=decision.consensus.score,
            consensus_reason=decision.consensus.reason,
            risk_approved=None if verdict is None else verdict.approved,
            risk_reasons=[] if verdict is None else list(verdict.reasons),
            client_order_id=None if order is None else order.client_order_id,
            decided_at=decision.decided_at,
        )
        try:
            with self._factory() as s, s.begin():
                s.add(row)
                s.flush()  # the order's foreign key needs the decision row first
                if order is not None:
                    s.add(_order_row(order, inp.account, broker))
        except IntegrityError:
            if self.has_decision(decision.decision_id):
                return False
            raise
        return True

    def get_order(self, client_order_id: ClientOrderId) -> Order | None:
        with self._factory() as s:
            row = s.get(OrderRow, client_order_id)
            return None if row is None else _order(row)

    def orders(
        self, account: str, status: OrderStatus | None = None, symbol: str | None = None
    ) -> list[Order]:
        q = select(OrderRow).where(OrderRow.account == account)
        if status is not None:
            q = q.where(OrderRow.status == status.value)
        if symbol is not None:
            q = q.where(OrderRow.symbol == symbol)
        with self._factory() as s:
            return [_order(r) for r in s.scalars(q.order_by(OrderRow.created_at))]

    def mark_submit_attempt(self, client_order_id: ClientOrderId, now: datetime) -> None:
        with self._factory() as s, s.begin():
            n = s.execute(
                update(OrderRow)
                .where(OrderRow.client_order_id == client_order_id)
                .values(submit_attempts=OrderRow.submit_attempts + 1, updated_at=now)
            ).rowcount
            if not n:
                raise UnknownOrder(f"no order {client_order_id} in the ledger")

    def transition_order(
        self,
        client_order_id: ClientOrderId,
        event: OrderEvent,
        now: datetime,
        error: str | None = None,
    ) -> Order:
        with self._factory() as s, s.begin():
            row = s.get(OrderRow, client_order_id, with_for_update=True)
            if row is None:
                raise UnknownOrder(f"no order {client_order_id} in the ledger")
            try:
                nxt = _order(row).apply(event)
            except InvalidTransition:
                log.warning("refused order transition", exc_info=True)
                raise
            row.status, row.updated_at, row.error = nxt.status.value, now, error
            return nxt

    def record_fill(self, account: str, fill: Fill) -> bool:
        """Apply a fill to order, position and cash in one transaction; False if already seen."""
        with self._factory() as s:
            try:
                with s.begin():
                    if s.get(FillRow, fill.fill_id) is not None:
                        return False
                    order_row = s.get(OrderRow, fill.client_order_id, with_for_update=True)
                    if order_row is None:
                        raise UnknownOrder(
                            f"fill {fill.fill_id} for unknown order {fill.client_order_id}"
                        )
                    try:
                        order = _order(order_row).fill(fill.quantity, fill.price)
                    except InvalidTransition:
                        log.warning("refused fill %s", fill.fill_id, exc_info=True)
                        raise
                    pos_row = s.get(PositionRow, (account, fill.symbol), with_for_update=True)
                    current = (
                        Position(fill.symbol)
                        if pos_row is None
                        else Position(
                            fill.symbol, pos_row.quantity, pos_row.avg_price, pos_row.realised_pnl
                        )
                    )
                    new_pos, realised = apply_fill(current, fill)
                    acct = s.get(AccountRow, account, with_for_update=True)
                    if acct is None:
                        raise LedgerError(f"unknown account {account!r}")
                    acct.cash = cash_after(acct.cash, fill)
                    acct.updated_at = fill.filled_at
                    if pos_row is None:
                        s.add(
                            PositionRow(
                                account=account,
                                symbol=fill.symbol,
                                quantity=new_pos.quantity,
                                avg_price=new_pos.avg_price,
                                realised_pnl=new_pos.realised_pnl,
                                updated_at=fill.filled_at,
                            )
                        )
                    else:
                        pos_row.quantity, pos_row.avg_price = new_pos.quantity, new_pos.avg_price
                        pos_row.realised_pnl, pos_row.updated_at = (
                            new_pos.realised_pnl,
                            fill.filled_at,
                        )
                    order_row.status, order_row.updated_at = order.status.value, fill.filled_at
                    order_row.filled_quantity = order.filled_quantity
                    order_row.filled_cost = order.filled_cost
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
                        )
                    )
            except IntegrityError:
                return False  # a concurrent writer stored the same fill id
        return True

    def fills(self, account: str) -> list[Fill]:
        with self._factory() as s:
            rows = s.scalars(
                select(FillRow)
                .where(FillRow.account == account)
                .order_by(FillRow.filled_at, FillRow.fill_id)
            )
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
                )
                for r in rows
            ]

    def positions(self, account: str) -> dict[Symbol, Position]:
        with self._factory() as s:
            rows = s.scalars(select(PositionRow).where(PositionRow.account == account))
            return {
                Symbol(r.symbol): Position(
                    Symbol(r.symbol), r.quantity, r.avg_price, r.realised_pnl
                )
                for r in rows
            }

    def realised_pnl_between(self, account: str, start: datetime, end: datetime) -> Decimal:
        with self._factory() as s:
            values = s.scalars(
                select(FillRow.realised_pnl).where(
                    FillRow.account == account, FillRow.filled_at >= start, FillRow.filled_at < end
                )
            )
            return sum(values, Decimal(0))

    def closed_trades(
        self, account: str, until: datetime | None = None, limit: int = 500
    ) -> list[TradeResult]:
        """Closing (sell) fills with their realised P&L, oldest first: the breaker's trades."""
        q = select(FillRow.filled_at, FillRow.realised_pnl, FillRow.price, FillRow.quantity).where(
            FillRow.account == account, FillRow.side == Side.SELL.value
        )
        if until is not None:
            q = q.where(FillRow.filled_at <= until)
        with self._factory() as s:
            rows = s.execute(
                q.order_by(FillRow.filled_at.desc(), FillRow.fill_id.desc()).limit(limit)
            ).all()
        return [TradeResult(t, pnl, price * qty) for t, pnl, price, qty in reversed(rows)]

    def daily_realised_pnl(self, account: str, at: datetime) -> Decimal:
        day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return self.realised_pnl_between(account, day, day + timedelta(days=1))

    def decisions(self, account: str, since: datetime | None = None) -> list[DecisionRow]:
        q = select(DecisionRow).where(DecisionRow.account == account)
        if since is not None:
            q = q.where(DecisionRow.candle_time >= since)
        with self._factory() as s:
            return list(s.scalars(q.order_by(DecisionRow.candle_time, DecisionRow.symbol)))

    def open_orders(self, account: str, symbol: str | None = None) -> list[Order]:
        """Orders not yet in a terminal state: they count against limits and can be cancelled."""
        q = select(OrderRow).where(
            OrderRow.account == account,
            OrderRow.status.in_([s.value for s in OrderStatus if s.is_open]),
        )
        if symbol is not None:
            q = q.where(OrderRow.symbol == symbol)
        with self._factory() as s:
            return [_order(r) for r in s.scalars(q.order_by(OrderRow.created_at))]

    def insert_order(self, order: Order, account: str, broker: str) -> bool:
        """Record an order the safety layer places itself; False if that id is stored already."""
        with self._factory() as s, s.begin():
            if s.get(OrderRow, order.client_order_id) is not None:
                return False
            s.add(_order_row(order, account, broker))
        return True

    # -- safety controls -------------------------------------------------------------------
    def control(self, name: str) -> SafetyStateRow | None:
        with self._factory() as s:
            return s.get(SafetyStateRow, name)

    def set_control(
        self,
        name: str,
        active: bool,
        reason: str | None,
        now: datetime,
        until: datetime | None = None,
        event: str | None = None,
        detail: dict[str, object] | None = None,
    ) -> None:
        """Set a control's state and record why, in one transaction."""
        with self._factory() as s, s.begin():
            row = s.get(SafetyStateRow, name, with_for_update=True)
            if row is None:
                s.add(
                    SafetyStateRow(
                        control=name, active=active, reason=reason, changed_at=now, until=until
                    )
                )
            else:
                row.active, row.reason, row.changed_at, row.until = active, reason, now, until
            s.add(
                SafetyEventRow(
                    at=now,
                    control=name,
                    step=event or ("activated" if active else "cleared"),
                    detail={"reason": reason, **(detail or {})}
                    | ({"until": until.isoformat()} if until else {}),
                )
            )
        self.note_trading_state(now)

    def record_safety_event(
        self, control: str, step: str, detail: dict[str, object], now: datetime
    ) -> None:
        with self._factory() as s, s.begin():
            s.add(SafetyEventRow(at=now, control=control, step=step, detail=detail))

    def safety_events(self, control: str | None = None, limit: int = 100) -> list[SafetyEventRow]:
        q = select(SafetyEventRow)
        if control is not None:
            q = q.where(SafetyEventRow.control == control)
        with self._factory() as s:
            rows = list(s.scalars(q.order_by(SafetyEventRow.id.desc()).limit(limit)))
        return rows[::-1]

    def note_trading_state(self, now: datetime) -> StateChange | None:
        """Record a change of the effective trading state (ACTIVE/REDUCING/HALTED) with its
        cause, when the controls just moved it; None when it did not change."""
        current, cause, detail = effective_state(self.safety_flags(now))
        with self._factory() as s, s.begin():
            last = s.scalar(
                select(SafetyEventRow)
                .where(SafetyEventRow.control == TRADING_STATE)
                .order_by(SafetyEventRow.id.desc())
                .limit(1)
            )
            previous = TradingState(last.step) if last is not None else TradingState.ACTIVE
            if previous is current:
                return None
            why = cause or HaltCause.CLEARED
            s.add(
                SafetyEventRow(
                    at=now,
                    control=TRADING_STATE,
                    step=current.value,
                    detail={"previous": previous.value, "cause": why.value, "detail": detail},
                )
            )
        return StateChange(previous, current, why, detail, now)

    def safety_flags(self, now: datetime | None = None) -> SafetyFlags:
        """The controls as the gate sees them at `now`: a breaker whose cooldown has ended no
        longer halts (the breaker job records its clearing)."""
        with self._factory() as s:
            rows = {r.control: r for r in s.scalars(select(SafetyStateRow))}
        kill = rows.get(KILL_SWITCH)
        breaker = rows.get(CIRCUIT_BREAKER)
        pending = rows.get(RECONCILIATION)
        operator = rows.get(OPERATOR)
        return SafetyFlags(
            kill_switch_reason=(kill.reason or "no reason given") if kill and kill.active else None,
            breaker_reason=(breaker.reason or "tripped")
            if breaker
            and breaker.active
            and (now is None or breaker.until is None or now < breaker.until)
            else None,
            reconciled=not (pending and pending.active),
            operator_state=TradingState(operator.reason)
            if operator and operator.active and operator.reason
            else TradingState.ACTIVE,
        )

    def kill_switch(self) -> KillSwitchState:
        with self._factory() as s:
            row = s.get(SafetyStateRow, KILL_SWITCH)
            if row is None:
                return KillSwitchState(False, None, None)
            return KillSwitchState(row.active, row.reason, row.changed_at)

    @contextmanager
    def _signed(
        self,
        signature: str,
        now: datetime,
        action: str,
        reason: str | None,
        client: str | None,
        request_timestamp: int | None,
    ) -> Iterator[Session]:
        """One transaction for an authenticated safety request: the signature is used up (a
        replay raises SignatureReplayed) and the accepted attempt recorded with the change."""
        try:
            with self._factory() as s, s.begin():
                s.add(UsedSignatureRow(signature=signature, used_at=now))
                s.flush()
                yield s
                s.add(_attempt(now, action, reason, client, request_timestamp))
        except IntegrityError as exc:
            raise SignatureReplayed("signature already used") from exc
        self.note_trading_state(now)

    def set_kill_switch(
        self,
        active: bool,
        reason: str | None,
        signature: str,
        now: datetime,
        client: str | None,
        request_timestamp: int | None,
    ) -> KillSwitchState:
        """Apply an authenticated request; a signature may be used once (SignatureReplayed)."""
        action = "activate" if active else "deactivate"
        with self._signed(signature, now, action, reason, client, request_timestamp) as s:
            row = s.get(SafetyStateRow, KILL_SWITCH, with_for_update=True)
            if row is None:
                row = SafetyStateRow(
                    control=KILL_SWITCH, active=active, reason=reason, changed_at=now
                )
                s.add(row)
            elif row.active != active:
                row.active, row.reason, row.changed_at = active, reason, now
            # else: already in that state; the first activation's time and reason stand,
            # so a repeated activation is a no-op that finds the same closing orders.
            state = KillSwitchState(row.active, row.reason, row.changed_at)
        return state

    def record_kill_switch_rejection(
        self,
        action: str | None,
        reason: str | None,
        rejection: str,
        now: datetime,
        client: str | None,
        request_timestamp: int | None,
    ) -> None:
        with self._factory() as s, s.begin():
            s.add(_attempt(now, action, reason, client, request_timestamp, rejection))

    def reset_circuit_breaker(
        self,
        reason: str,
        signature: str,
        now: datetime,
        client: str | None,
        request_timestamp: int | None,
    ) -> None:
        """An authenticated early reset; the signature may be used once (SignatureReplayed)."""
        with self._signed(signature, now, "breaker_reset", reason, client, request_timestamp) as s:
            row = s.get(SafetyStateRow, CIRCUIT_BREAKER, with_for_update=True)
            was = bool(row and row.active)
            if row is not None:
                row.active, row.reason, row.changed_at, row.until = False, reason, now, None
            s.add(
                SafetyEventRow(
                    at=now,
                    control=CIRCUIT_BREAKER,
                    step="reset_early" if was else "reset_not_tripped",
                    detail={"reason": reason, "client": client},
                )
            )

    def count_rejections(self, client: str | None, since: datetime) -> int:
        """Rejected safety requests from `client` since `since` (for per-client rate limits)."""
        with self._factory() as s:
            return (
                s.scalar(
                    select(func.count())
                    .select_from(KillSwitchEventRow)
                    .where(
                        KillSwitchEventRow.accepted.is_(False),
                        KillSwitchEventRow.client == client,
                        KillSwitchEventRow.at >= since,
                    )
                )
                or 0
            )

    def kill_switch_events(self, limit: int = 100) -> list[KillSwitchEventRow]:
        with self._factory() as s:
            return list(
                s.scalars(
                    select(KillSwitchEventRow).order_by(KillSwitchEventRow.id.desc()).limit(limit)
                )
            )


def _attempt(
    now: datetime,
    action: str | None,
    reason: str | None,
    client: str | None,
    request_timestamp: int | None,
    rejection: str | None = None,
) -> KillSwitchEventRow:
    """One signed safety request as it was answered: accepted, or refused and why."""
    return KillSwitchEventRow(
        at=now,
        action=action,
        accepted=rejection is None,
        reason=reason,
        rejection=rejection,
        client=client,
        request_timestamp=request_timestamp,
    )


def _order_row(order: Order, account: str, broker: str) -> OrderRow:
    return OrderRow(
        client_order_id=order.client_order_id,
        decision_id=order.decision_id,
        account=account,
        broker=broker,
        symbol=order.symbol,
        side=order.side.value,
        origin=order.origin.value,
        order_type=order.order_type.value,
        quantity=order.quantity,
        limit_price=order.limit_price,
        filled_quantity=order.filled_quantity,
        filled_cost=order.filled_cost,
        status=order.status.value,
        market_time=order.market_time,
        created_at=order.created_at,
        updated_at=order.created_at,
        submit_attempts=0,
    )


def _order(row: OrderRow) -> Order:
    return Order(
        client_order_id=ClientOrderId(row.client_order_id),
        decision_id=None if row.decision_id is None else DecisionId(row.decision_id),
        symbol=Symbol(row.symbol),
        side=Side(row.side),
        quantity=row.quantity,
        created_at=row.created_at,
        market_time=row.market_time,
        order_type=OrderType(row.order_type),
        status=OrderStatus(row.status),
        limit_price=row.limit_price,
        filled_quantity=row.filled_quantity,
        filled_cost=row.filled_cost,
        origin=OrderOrigin(row.origin),
    )


def ledger_for(url: str) -> Ledger:
    from infra.ledger.database import session_factory

    return Ledger(session_factory(url))
