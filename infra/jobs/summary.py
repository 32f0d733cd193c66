"""What a run left in the ledger, in numbers a trader reads."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from core.types import Symbol
from infra.ledger.repository import Ledger


@dataclass(frozen=True, slots=True)
class PositionLine:
    symbol: str
    quantity: Decimal
    avg_price: Decimal
    last_price: Decimal
    unrealised_pnl: Decimal
    realised_pnl: Decimal


@dataclass
class LedgerSummary:
    since: datetime | None
    actions: Counter[str] = field(default_factory=Counter)
    denied_decisions: int = 0
    denial_reasons: Counter[str] = field(default_factory=Counter)
    orders_by_status: Counter[str] = field(default_factory=Counter)
    fills: int = 0
    fees: Decimal = Decimal(0)
    positions: list[PositionLine] = field(default_factory=list)
    starting_cash: Decimal = Decimal(0)
    cash: Decimal = Decimal(0)

    @property
    def equity(self) -> Decimal:
        return self.cash + sum((p.quantity * p.last_price for p in self.positions), Decimal(0))

    @property
    def pnl(self) -> Decimal:
        return self.equity - self.starting_cash


def summarise(
    ledger: Ledger, account: str, exchange: str, timeframe: str, since: datetime | None = None
) -> LedgerSummary:
    out = LedgerSummary(since=since)
    for d in ledger.decisions(account, since=since):
        out.actions[d.action] += 1
        if d.risk_approved is False:
            out.denied_decisions += 1
            for reason in d.risk_reasons:
                out.denial_reasons[reason.split(":", 1)[0]] += 1
    for order in ledger.orders(account):
        out.orders_by_status[order.status.value] += 1
    fills = ledger.fills(account)
    out.fills = len(fills)
    out.fees = sum((f.fee for f in fills), Decimal(0))
    for symbol, pos in sorted(ledger.positions(account).items()):
        last = ledger.load_candles(exchange, symbol, timeframe, limit=1)
        price = Decimal(repr(float(last["close"].iloc[-1]))) if len(last) else pos.avg_price
        out.positions.append(
            PositionLine(
                Symbol(symbol),
                pos.quantity,
                pos.avg_price,
                price,
                pos.unrealised_pnl(price),
                pos.realised_pnl,
            )
        )
    out.starting_cash = ledger.starting_cash(account)
    out.cash = ledger.cash(account)
    return out
