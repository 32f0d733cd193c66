"""Positions and P&L from fills, in exact decimals (spot, long-only accounting)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
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
    """Return the new position and the realised P&L of this fill (fees included)."""
    if fill.side is Side.BUY:
        qty = position.quantity + fill.quantity
        avg = (position.avg_price * position.quantity + fill.price * fill.quantity) / qty
        realised = -fill.fee
        return Position(position.symbol, qty, avg, position.realised_pnl + realised), realised
    if fill.quantity > position.quantity:
        raise OverSell(
            f"{fill.client_order_id}: sells {fill.quantity} {fill.symbol} but holds "
            f"{position.quantity}"
        )
    qty = position.quantity - fill.quantity
    realised = (fill.price - position.avg_price) * fill.quantity - fill.fee
    avg = position.avg_price if qty > 0 else ZERO
    return Position(position.symbol, qty, avg, position.realised_pnl + realised), realised


def cash_after(cash: Decimal, fill: Fill) -> Decimal:
    gross = fill.price * fill.quantity
    return cash - gross - fill.fee if fill.side is Side.BUY else cash + gross - fill.fee


def replay_fills(fills: Iterable[Fill]) -> dict[Symbol, Position]:
    positions: dict[Symbol, Position] = {}
    for fill in fills:
        current = positions.get(fill.symbol, Position(fill.symbol))
        positions[fill.symbol], _ = apply_fill(current, fill)
    return positions


def total_exposure(
    positions: Mapping[Symbol, Position], prices: Mapping[Symbol, Decimal]
) -> Decimal:
    return sum((p.notional(prices[s]) for s, p in positions.items() if p.quantity), ZERO)


def equity_path(starting_cash: Decimal, fills: Iterable[Fill]) -> Iterator[Decimal]:
    """The account's equity after each fill, every position valued at its latest fill price
    (the only prices the fills themselves carry): the curve a drawdown is measured on."""
    cash = starting_cash
    held: dict[Symbol, Decimal] = {}
    last: dict[Symbol, Decimal] = {}
    for fill in fills:
        cash = cash_after(cash, fill)
        sign = 1 if fill.side is Side.BUY else -1
        held[fill.symbol] = held.get(fill.symbol, ZERO) + sign * fill.quantity
        last[fill.symbol] = fill.price
        yield cash + sum((q * last[s] for s, q in held.items()), ZERO)
