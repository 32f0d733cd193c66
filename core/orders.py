"""Orders: deterministic client ids and an explicit lifecycle state machine.

    NEW -> SUBMITTED -> (ACCEPTED) -> PARTIALLY_FILLED -> FILLED
    any working state -> CANCEL_PENDING -> CANCELLED; REJECTED; EXPIRED

A fill carries a quantity: it moves the order to PARTIALLY_FILLED or FILLED, never beyond its
quantity, and keeps the quantity-weighted average price. A fill may still arrive while a cancel
is pending (the race every exchange has): it is applied, and the order stays CANCEL_PENDING
until the cancel is confirmed or the fill completes it. Terminal states never change. Anything
else raises InvalidTransition and the order is left as it was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from core.errors import FatalError
from core.types import (
    ClientOrderId,
    DecisionId,
    Price,
    Quantity,
    Side,
    Symbol,
    as_price,
    as_quantity,
)

ZERO = Decimal(0)


class OrderStatus(StrEnum):
    NEW = "new"  # recorded in the ledger, not yet sent
    SUBMITTED = "submitted"  # sent; the broker has not confirmed it yet
    ACCEPTED = "accepted"  # the broker holds it (resting or about to match)
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCEL_PENDING = "cancel_pending"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def is_open(self) -> bool:
        """Working at the broker (or about to be): counts against limits, can be cancelled."""
        return self not in TERMINAL


TERMINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)


class OrderEvent(StrEnum):
    SUBMIT = "submit"
    ACCEPT = "accept"
    FILL = "fill"
    REQUEST_CANCEL = "request_cancel"
    CANCEL = "cancel"  # the broker confirmed the cancel (or the order never left us)
    CANCEL_REJECTED = "cancel_rejected"  # too late: the order is still working
    REJECT = "reject"
    EXPIRE = "expire"


class OrderOrigin(StrEnum):
    DECISION = "decision"  # placed by the decision flow, through the risk gate
    KILL_SWITCH = "kill_switch"  # the kill switch closing a position
    MANUAL = "manual"  # placed by an operator through the API, through the same risk gate


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"


_S, _E = OrderStatus, OrderEvent
_WORKING = (_S.SUBMITTED, _S.ACCEPTED, _S.PARTIALLY_FILLED)

# Non-fill transitions. FILL is handled by Order.fill (its target depends on the quantity);
# CANCEL_REJECTED returns to the working state the filled quantity implies.
NEXT: Mapping[tuple[OrderStatus, OrderEvent], OrderStatus] = {
    (_S.NEW, _E.SUBMIT): _S.SUBMITTED,
    (_S.NEW, _E.REJECT): _S.REJECTED,
    (_S.NEW, _E.CANCEL): _S.CANCELLED,
    (_S.SUBMITTED, _E.ACCEPT): _S.ACCEPTED,
    (_S.SUBMITTED, _E.REJECT): _S.REJECTED,
    **{(s, _E.REQUEST_CANCEL): _S.CANCEL_PENDING for s in _WORKING},
    **{(s, _E.CANCEL): _S.CANCELLED for s in (*_WORKING, _S.CANCEL_PENDING)},
    **{(s, _E.EXPIRE): _S.EXPIRED for s in (*_WORKING, _S.CANCEL_PENDING)},
}
FILLABLE = frozenset({*_WORKING, _S.CANCEL_PENDING})


class InvalidTransition(FatalError):
    """An event that the order's state does not allow; the order is unchanged."""


class Overfill(InvalidTransition):
    pass


def decision_id_for(account: str, symbol: str, timeframe: str, candle_time: datetime) -> DecisionId:
    """One decision per account, symbol, timeframe and candle: a re-run finds the same id."""
    return decision_id_at(account, symbol, timeframe, int(candle_time.timestamp()))


def decision_id_at(account: str, symbol: str, timeframe: str, opened: int) -> DecisionId:
    """`decision_id_for` the candle opened `opened` seconds after the epoch (a backtest's
    holds carry that number already)."""
    return DecisionId(f"{account}:{symbol}:{timeframe}:{opened}")


def client_order_id_for(decision_id: DecisionId) -> ClientOrderId:
    # Exchanges cap client ids (Binance: 36 chars of [.A-Z:/a-z0-9_-]); a hash keeps it short.
    return ClientOrderId("tf-" + hashlib.sha256(decision_id.encode()).hexdigest()[:32])


def kill_switch_order_id(activated_at: datetime, symbol: str) -> ClientOrderId:
    """One closing order per symbol per activation: a repeated activation finds the same id."""
    key = f"kill:{int(activated_at.timestamp() * 1000)}:{symbol}"
    return ClientOrderId("ks-" + hashlib.sha256(key.encode()).hexdigest()[:32])


@dataclass(frozen=True, slots=True)
class Order:
    client_order_id: ClientOrderId
    decision_id: DecisionId | None  # None for orders the safety layer places itself
    symbol: Symbol
    side: Side
    quantity: Quantity
    created_at: datetime
    # Close of the candle the decision saw: a fill may only use prices from this moment on.
    market_time: datetime
    order_type: OrderType = OrderType.MARKET
    status: OrderStatus = OrderStatus.NEW
    limit_price: Price | None = None
    filled_quantity: Decimal = ZERO
    filled_cost: Decimal = ZERO  # sum of price * quantity over fills: exact, unlike an average
    origin: OrderOrigin = OrderOrigin.DECISION

    def __post_init__(self) -> None:
        if not isinstance(self.quantity, Decimal) or self.quantity <= 0:
            raise ValueError(f"{self.client_order_id}: bad quantity {self.quantity!r}")
        object.__setattr__(self, "quantity", as_quantity(self.quantity))
        if (self.order_type is OrderType.LIMIT) != (self.limit_price is not None):
            raise ValueError(f"{self.client_order_id}: a limit order needs a limit price, only")
        if self.limit_price is not None:
            if self.limit_price <= 0:
                raise ValueError(f"{self.client_order_id}: bad limit price {self.limit_price!r}")
            object.__setattr__(self, "limit_price", as_price(self.limit_price))

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity

    @property
    def average_price(self) -> Decimal | None:
        return self.filled_cost / self.filled_quantity if self.filled_quantity else None

    def apply(self, event: OrderEvent) -> Order:
        if event is OrderEvent.FILL:
            raise InvalidTransition(f"{self.client_order_id}: a fill needs Order.fill(qty, price)")
        if event is OrderEvent.CANCEL_REJECTED and self.status is OrderStatus.CANCEL_PENDING:
            back = OrderStatus.PARTIALLY_FILLED if self.filled_quantity else OrderStatus.ACCEPTED
            return replace(self, status=back)
        nxt = NEXT.get((self.status, event))
        if nxt is None:
            raise InvalidTransition(f"{self.client_order_id}: {self.status} -/-> {event}")
        return replace(self, status=nxt)

    def fill(self, quantity: Decimal, price: Decimal) -> Order:
        if self.status not in FILLABLE:
            raise InvalidTransition(f"{self.client_order_id}: {self.status} cannot be filled")
        if quantity <= 0 or price <= 0:
            raise InvalidTransition(
                f"{self.client_order_id}: fill of {quantity} at {price} is not positive"
            )
        filled = self.filled_quantity + quantity
        if filled > self.quantity:
            raise Overfill(
                f"{self.client_order_id}: fill of {quantity} would make {filled} of {self.quantity}"
            )
        return replace(
            self,
            status=status_after_fill(self.status, filled, self.quantity),
            filled_quantity=filled,
            filled_cost=self.filled_cost + price * quantity,
        )


def status_after_fill(current: OrderStatus, filled: Decimal, quantity: Decimal) -> OrderStatus:
    """Complete: FILLED. Otherwise a pending cancel stays pending (it may still win)."""
    if filled == quantity:
        return OrderStatus.FILLED
    if current is OrderStatus.CANCEL_PENDING:
        return OrderStatus.CANCEL_PENDING
    return OrderStatus.PARTIALLY_FILLED


@dataclass(frozen=True, slots=True)
class Fill:
    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    quantity: Quantity
    price: Price
    fee: Decimal  # in the quote currency, or in the base asset when `fee_in_base`
    filled_at: datetime
    fill_id: str
    # Some exchanges take the fee from what was bought (Binance without BNB): a buy then adds
    # less than its quantity to the holding, a sell takes more.
    fee_in_base: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantity", as_quantity(self.quantity))
        object.__setattr__(self, "price", as_price(self.price))

    @property
    def quote_fee(self) -> Decimal:
        return ZERO if self.fee_in_base else self.fee

    @property
    def base_fee(self) -> Decimal:
        return self.fee if self.fee_in_base else ZERO

    @property
    def holding_change(self) -> Decimal:
        """What the fill does to the base asset held: received (buy) or given (sell, < 0)."""
        if self.side is Side.BUY:
            return self.quantity - self.base_fee
        return -(self.quantity + self.base_fee)


@dataclass(frozen=True, slots=True)
class OrderChange:
    """Events to apply to one recorded order, in order; `sent` counts a submit attempt."""

    client_order_id: ClientOrderId
    events: tuple[OrderEvent, ...]
    error: str | None = None
    sent: bool = False
