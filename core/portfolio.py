"""Positions and P&L from fills, in exact decimals (spot, long-only accounting)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from core.orders import Fill
from core.types import Side, Symbol

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Position:
    symbol: Symbol
    quantity: Decimal = ZERO
    avg_price: Decimal = ZERO
    realised_pnl: Decimal = ZERO  # net of fees

    def notional(self, price: Decimal) -> Decimal:
        return self.quantity * price

    def unrealised_pnl(self, price: Decimal) -> Decimal:
        return (price - self.avg_price) * self.quantity


class OverSell(ValueError):
    pass


def apply_fill(position: Position, fill: Fill) -> tuple[Position, Decimal]:
    """Return the new position and the realised P&L of this fill (fees included). A fee taken
    in the base asset is units given away at their cost: on a buy the units received cost the
    fill price, on a sell they cost the position's average."""
    if fill.side is Side.BUY:
        received = fill.holding_change
        qty = position.quantity + received
        avg = (position.avg_price * position.quantity + fill.price * received) / qty
        realised = -(fill.quote_fee + fill.base_fee * fill.price)
        return Position(position.symbol, qty, avg, position.realised_pnl + realised), realised
    given = -fill.holding_change
    if given > position.quantity:
        raise OverSell(
            f"{fill.client_order_id}: sells {given} {fill.symbol} (fee included) but holds "
            f"{position.quantity}"
        )
    qty = position.quantity - given
    realised = (
        (fill.price - position.avg_price) * fill.quantity
        - fill.quote_fee
        - position.avg_price * fill.base_fee
    )
    avg = position.avg_price if qty > 0 else ZERO
    return Position(position.symbol, qty, avg, position.realised_pnl + realised), realised


def cash_after(cash: Decimal, fill: Fill) -> Decimal:
    gross = fill.price * fill.quantity
    if fill.side is Side.BUY:
        return cash - gross - fill.quote_fee
    return cash + gross - fill.quote_fee


def replay_fills(fills: Iterable[Fill]) -> dict[Symbol, Position]:
    positions: dict[Symbol, Position] = {}
    for fill in fills:
        current = positions.get(fill.symbol, Position(fill.symbol))
        positions[fill.symbol], _ = apply_fill(current, fill)
    return positions


def entry_times(fills: Iterable[Fill], symbols: Iterable[Symbol]) -> dict[Symbol, datetime]:
    """For each of `symbols` still held after `fills` (oldest first): when its holding was
    opened, i.e. the first fill after it was last flat."""
    wanted = set(symbols)
    held: dict[Symbol, Decimal] = {}
    opened: dict[Symbol, datetime] = {}
    for fill in fills:
        if fill.symbol not in wanted:
            continue
        before = held.get(fill.symbol, ZERO)
        held[fill.symbol] = before + fill.holding_change
        if before <= 0 < held[fill.symbol]:
            opened[fill.symbol] = fill.filled_at
    return {s: t for s, t in opened.items() if held.get(s, ZERO) > 0}


def equity(
    cash: Decimal, holdings: Mapping[Symbol, Decimal], prices: Mapping[Symbol, Decimal]
) -> Decimal:
    """Cash plus every holding at its price: the one definition of equity in this system (a
    holding without a price counts as zero, so a caller passes every price it knows)."""
    return cash + sum((q * prices.get(s, ZERO) for s, q in holdings.items() if q), ZERO)


def total_exposure(
    positions: Mapping[Symbol, Position], prices: Mapping[Symbol, Decimal]
) -> Decimal:
    return sum((p.notional(prices[s]) for s, p in positions.items() if p.quantity), ZERO)


@dataclass
class EquityCurve:
    """The account's equity after each fill, every position valued at its latest fill price
    (the only prices the fills themselves carry): the curve a drawdown is measured on. Fed
    fill by fill, oldest first, so a caller can keep it and add only the new fills."""

    cash: Decimal
    peak: Decimal
    held: dict[Symbol, Decimal] = field(default_factory=dict)
    last: dict[Symbol, Decimal] = field(default_factory=dict)

    @classmethod
    def starting(cls, cash: Decimal) -> EquityCurve:
        return cls(cash=cash, peak=cash)

    def add(self, fill: Fill) -> Decimal:
        self.cash = cash_after(self.cash, fill)
        self.held[fill.symbol] = self.held.get(fill.symbol, ZERO) + fill.holding_change
        self.last[fill.symbol] = fill.price
        value = equity(self.cash, self.held, self.last)
        self.peak = max(self.peak, value)
        return value


def equity_path(starting_cash: Decimal, fills: Iterable[Fill]) -> Iterator[Decimal]:
    curve = EquityCurve.starting(starting_cash)
    for fill in fills:
        yield curve.add(fill)
