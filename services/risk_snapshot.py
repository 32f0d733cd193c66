"""The risk gate's view of the world at decision time, read from the ledger (never from memory):
positions, open orders, free cash, today's realised + unrealised P&L, and the safety controls."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

from core.candles.timeframe import timeframe_delta
from core.portfolio import cash_after, entry_times, equity, replay_fills
from core.ports import TradingLedger
from core.risk.limits import RiskState
from core.risk.state import effective_state
from core.types import Side, Symbol

ZERO = Decimal(0)


class RiskSnapshots:
    """Builds RiskState per decision; the equity at 00:00 UTC is computed once per day."""

    def __init__(self, ledger: TradingLedger, account: str, exchange: str, timeframe: str) -> None:
        self.ledger, self.account = ledger, account
        self.exchange, self.timeframe = exchange, timeframe
        self._day_start: dict[datetime, Decimal] = {}
        self._entered: dict[Symbol, datetime] = {}
        self._fills_read = -1  # how many fills `_entered` was derived from
        self._starting_cash: Decimal | None = None

    def starting_cash(self) -> Decimal:
        """The account's starting cash, read once: it never changes once the account is made
        (a live run asked for it twice, a query each)."""
        if self._starting_cash is None:
            self._starting_cash = self.ledger.accounts.starting_cash(self.account)
        return self._starting_cash

    def snapshot(self, prices: Mapping[str, Decimal], now: datetime) -> RiskState:
        positions = {s: p.quantity for s, p in self.ledger.fills.positions(self.account).items()}
        open_buys: dict[Symbol, Decimal] = defaultdict(lambda: ZERO)
        open_sells: dict[Symbol, Decimal] = defaultdict(lambda: ZERO)
        open_orders = self.ledger.orders.open(self.account)
        for order in open_orders:
            book = open_buys if order.side is Side.BUY else open_sells
            book[order.symbol] += order.remaining
        known = {Symbol(s): p for s, p in prices.items()}
        cash = self.ledger.accounts.cash(self.account)
        reserved = equity(ZERO, open_buys, known)  # open buys, valued: set aside from cash
        day_start = self.day_start_equity(now)
        state, cause, detail = effective_state(self.ledger.safety.flags(now))
        return RiskState(
            cash=cash - reserved,
            positions=positions,
            prices=known,
            daily_pnl=equity(cash, positions, known) - day_start,
            day_start_equity=day_start,
            open_buys=dict(open_buys),
            open_sells=dict(open_sells),
            open_orders=len(open_orders),
            trading_state=state,
            halt_reason=f"{cause}: {detail}" if cause is not None else "",
            entered_at=self.entries(positions),
        )

    def entries(self, positions: Mapping[Symbol, Decimal]) -> dict[Symbol, datetime]:
        """When each holding was opened. Derived from the fills again only when their count
        changed (a backtest asks at every candle; a holding closed and reopened in between, or
        a fill adopted late by reconciliation, changes the count)."""
        held = [s for s, q in positions.items() if q]
        if not held:
            return {}
        count = self.ledger.fills.count(self.account)
        if count != self._fills_read:
            self._entered = entry_times(self.ledger.fills.history(self.account), held)
            self._fills_read = count
        return {s: t for s, t in self._entered.items() if positions.get(s)}

    def day_start_equity(self, now: datetime) -> Decimal:
        day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        if day not in self._day_start:
            self._day_start[day] = self.equity_at(day)
        return self._day_start[day]

    def equity_at(self, moment: datetime) -> Decimal:
        """Cash and positions from the fills before `moment`, valued at the last close before it
        (at their average price where no candle is stored)."""
        fills = [
            f for f in self.ledger.fills.history(self.account, until=moment) if f.filled_at < moment
        ]
        cash = self.starting_cash()
        for fill in fills:
            cash = cash_after(cash, fill)
        held = {s: p for s, p in replay_fills(fills).items() if p.quantity}
        before = moment - timeframe_delta(self.timeframe)
        prices = {
            s: self.ledger.candles.last_close(self.exchange, s, self.timeframe, until=before)
            or position.avg_price
            for s, position in held.items()
        }
        return equity(cash, {s: p.quantity for s, p in held.items()}, prices)
