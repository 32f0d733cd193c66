"""The risk gate's view of the world at decision time, read from the ledger (never from memory):
positions, open orders, free cash, today's realised + unrealised P&L, and the safety controls."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

from core.candles.timeframe import timeframe_delta
from core.orders import Fill
from core.portfolio import cash_after, replay_fills
from core.risk.limits import RiskState
from core.risk.state import SafetyFlags, effective_state
from core.types import Side, Symbol, to_decimal
from infra.ledger.repository import Ledger

ZERO = Decimal(0)


class RiskSnapshots:
    """Builds RiskState per decision; the equity at 00:00 UTC is computed once per day."""

    def __init__(self, ledger: Ledger, account: str, exchange: str, timeframe: str) -> None:
        self.ledger, self.account, self.exchange, self.timeframe = (
            ledger,
            account,
            exchange,
            timeframe,
        )
        self._day_start: dict[datetime, Decimal] = {}

    def flags(self, now: datetime) -> SafetyFlags:
        return self.ledger.safety_flags(now)

    def snapshot(self, prices: Mapping[str, Decimal], now: datetime) -> RiskState:
        positions = {s: p.quantity for s, p in self.ledger.positions(self.account).items()}
        open_buys: dict[Symbol, Decimal] = defaultdict(lambda: ZERO)
        open_sells: dict[Symbol, Decimal] = defaultdict(lambda: ZERO)
        open_orders = self.ledger.open_orders(self.account)
        for order in open_orders:
            book = open_buys if order.side is Side.BUY else open_sells
            book[order.symbol] += order.remaining
        known = {Symbol(s): p for s, p in prices.items()}
        reserved = sum((q * known.get(s, ZERO) for s, q in open_buys.items()), ZERO)
        cash = self.ledger.cash(self.account)
        equity = cash + sum((q * known.get(s, ZERO) for s, q in positions.items()), ZERO)
        day_start = self.day_start_equity(now)
        state, cause, detail = effective_state(self.flags(now))
        return RiskState(
            cash=cash - reserved,
            positions=positions,
            prices=known,
            daily_pnl=equity - day_start,
            day_start_equity=day_start,
            open_buys=dict(open_buys),
            open_sells=dict(open_sells),
            open_orders=len(open_orders),
            trading_state=state,
            halt_reason=f"{cause}: {detail}" if cause is not None else "",
        )

    def day_start_equity(self, now: datetime) -> Decimal:
        day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        if day not in self._day_start:
            self._day_start[day] = self._equity_at(day)
        return self._day_start[day]

    def _equity_at(self, moment: datetime) -> Decimal:
        """Cash and positions from the fills before `moment`, valued at the last close before it."""
        fills: list[Fill] = [f for f in self.ledger.fills(self.account) if f.filled_at < moment]
        cash = self.ledger.starting_cash(self.account)
        for fill in fills:
            cash = cash_after(cash, fill)
        value = ZERO
        for symbol, position in replay_fills(fills).items():
            if not position.quantity:
                continue
            last = self.ledger.load_candles(
                self.exchange,
                symbol,
                self.timeframe,
                until=moment - timeframe_delta(self.timeframe),
                limit=1,
            )
            price = position.avg_price if last.empty else to_decimal(float(last["close"].iloc[-1]))
            value += position.quantity * price
        return cash + value
