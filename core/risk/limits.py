"""Pre-trade risk gate. Each check returns a denial reason or None; a verdict keeps them all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from core.types import Side, Symbol


@dataclass(frozen=True, slots=True)
class RiskLimits:
    whitelist: frozenset[str]
    max_order_notional: Decimal
    max_position_notional: Decimal
    max_total_exposure: Decimal
    max_daily_loss: Decimal  # a positive amount of quote currency


@dataclass(frozen=True, slots=True)
class ProposedOrder:
    symbol: Symbol
    side: Side
    quantity: Decimal
    price: Decimal  # the last known price, used to value the order

    @property
    def notional(self) -> Decimal:
        return self.quantity * self.price


@dataclass(frozen=True, slots=True)
class RiskState:
    kill_switch_active: bool
    kill_switch_reason: str | None
    position_quantity: Decimal  # held in this symbol
    total_exposure: Decimal  # notional of all positions at last prices
    daily_realised_pnl: Decimal  # since 00:00 UTC of the decision's day, fees included
    cash: Decimal


@dataclass(frozen=True, slots=True)
class RiskVerdict:
    reasons: tuple[str, ...]

    @property
    def approved(self) -> bool:
        return not self.reasons


Check = Callable[[ProposedOrder, RiskState, RiskLimits], str | None]


def check_kill_switch(order: ProposedOrder, state: RiskState, limits: RiskLimits) -> str | None:
    if state.kill_switch_active:
        return f"KILL_SWITCH_ACTIVE: {state.kill_switch_reason or 'no reason given'}"
    return None


def check_whitelist(order: ProposedOrder, state: RiskState, limits: RiskLimits) -> str | None:
    if order.symbol not in limits.whitelist:
        return f"SYMBOL_NOT_WHITELISTED: {order.symbol} not in {sorted(limits.whitelist)}"
    return None


def check_order_notional(order: ProposedOrder, state: RiskState, limits: RiskLimits) -> str | None:
    # Caps new risk: a sell closing a long may be larger, or the gate would trap the position.
    if order.side is Side.BUY and order.notional > limits.max_order_notional:
        return (
            f"ORDER_NOTIONAL_EXCEEDS_MAX: notional={order.notional:.2f} "
            f"max={limits.max_order_notional}"
        )
    return None


def check_position(order: ProposedOrder, state: RiskState, limits: RiskLimits) -> str | None:
    if order.side is Side.SELL:
        if state.position_quantity <= 0:
            return f"NO_POSITION_TO_SELL: flat in {order.symbol} (spot, no shorting)"
        if order.quantity > state.position_quantity:
            return (
                f"NO_SHORT_SELLING: sell {order.quantity} > held "
                f"{state.position_quantity} {order.symbol}"
            )
        return None
    after = (state.position_quantity + order.quantity) * order.price
    if after > limits.max_position_notional:
        return (
            f"POSITION_EXCEEDS_MAX: {order.symbol} notional after={after:.2f} "
            f"max={limits.max_position_notional}"
        )
    return None


def check_total_exposure(order: ProposedOrder, state: RiskState, limits: RiskLimits) -> str | None:
    if order.side is Side.BUY and state.total_exposure + order.notional > limits.max_total_exposure:
        return (
            f"TOTAL_EXPOSURE_EXCEEDS_MAX: after={state.total_exposure + order.notional:.2f} "
            f"max={limits.max_total_exposure}"
        )
    return None


def check_daily_loss(order: ProposedOrder, state: RiskState, limits: RiskLimits) -> str | None:
    # Reducing exposure is always allowed: the limit stops new risk, not an exit.
    if order.side is Side.BUY and -state.daily_realised_pnl >= limits.max_daily_loss:
        return (
            f"DAILY_LOSS_LIMIT: realised today={state.daily_realised_pnl:.2f} "
            f"limit=-{limits.max_daily_loss}"
        )
    return None


def check_cash(order: ProposedOrder, state: RiskState, limits: RiskLimits) -> str | None:
    if order.side is Side.BUY and order.notional > state.cash:
        return f"INSUFFICIENT_CASH: needs {order.notional:.2f} has {state.cash:.2f}"
    return None


CHECKS: tuple[Check, ...] = (
    check_kill_switch,
    check_whitelist,
    check_order_notional,
    check_position,
    check_total_exposure,
    check_daily_loss,
    check_cash,
)


def evaluate(order: ProposedOrder, state: RiskState, limits: RiskLimits) -> RiskVerdict:
    return RiskVerdict(tuple(r for check in CHECKS if (r := check(order, state, limits))))
