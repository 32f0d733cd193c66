"""What a run left in the ledger, in numbers a trader reads."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from core.agents.calls import AgentUsage
from core.portfolio import equity
from core.ports import Ledger
from core.types import Symbol


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
    panels: Counter[str] = field(default_factory=Counter)  # decisions by who voted
    abstentions: Counter[str] = field(default_factory=Counter)  # agent votes not given, by cause
    agent_usage: AgentUsage = field(default_factory=AgentUsage)

    @property
    def equity(self) -> Decimal:
        holdings = {Symbol(p.symbol): p.quantity for p in self.positions}
        return equity(self.cash, holdings, {Symbol(p.symbol): p.last_price for p in self.positions})

    @property
    def pnl(self) -> Decimal:
        return self.equity - self.starting_cash


def summarise(
    ledger: Ledger, account: str, exchange: str, timeframe: str, since: datetime | None = None
) -> LedgerSummary:
    out = LedgerSummary(since=since)
    for d in ledger.orders.decisions(account, since=since):
        out.actions[d.action.value] += 1
        out.panels[str(d.provenance.get("panel", "offline"))] += 1
        out.abstentions.update(v.abstained for v in d.votes if v.abstained)
        if d.risk_approved is False:
            out.denied_decisions += 1
            for denial in d.denials:
                out.denial_reasons[denial.code.value] += 1
    for order in ledger.orders.find(account):
        out.orders_by_status[order.status.value] += 1
    fills = ledger.fills.history(account)
    out.fills = len(fills)
    # Fees in the quote currency; one taken in the base asset counts at its fill's price.
    out.fees = sum((f.quote_fee + f.base_fee * f.price for f in fills), Decimal(0))
    for symbol, pos in sorted(ledger.fills.positions(account).items()):
        price = ledger.candles.last_close(exchange, symbol, timeframe) or pos.avg_price
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
    out.agent_usage = ledger.agent_calls.usage(account, since)
    out.starting_cash = ledger.accounts.starting_cash(account)
    out.cash = ledger.accounts.cash(account)
    return out
