"""How the account is doing, from the ledger: P&L per symbol and in total, per day and per
ISO week, the equity curve with its drawdown, Sharpe and Sortino of the daily returns, the
maximum and current drawdown, and the win rate of the closed round trips.

Accounting is core.portfolio's (`apply_fill`, `cash_after`, `equity`), in exact decimals: a
symbol's P&L is its realised P&L (fees included) plus its open quantity valued at the mark, so
the symbols' P&L add up to equity minus the starting cash exactly. A symbol is marked at its
newest price known at that moment: a candle's close (at the candle's close time) or a fill's
price, whichever is later; never a price from after the moment. Days are UTC; the current day
ends now. Sharpe and Sortino are core.backtest.stats' over the daily returns, annualised with
365 periods (crypto trades every day); None where undefined (fewer than two days, no spread,
no losing day), as is the win rate without a closed round trip.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import numpy as np

from core.backtest.stats import fee_in_quote, pair_stats, round_trips, sharpe_sortino
from core.browse import Closes
from core.orders import Fill
from core.portfolio import Position, apply_fill
from core.ports import Ledger
from core.types import Symbol

ZERO = Decimal(0)
DAYS_PER_YEAR = 365


@dataclass(frozen=True, slots=True)
class EquityPoint:
    time: datetime
    equity: Decimal
    drawdown: float  # below the highest equity so far (the starting cash included), a fraction


@dataclass(frozen=True, slots=True)
class PeriodPnl:
    """One UTC day or ISO week: what it made, per symbol and in total, and the equity at its
    end."""

    label: str  # "2024-02-03", or "2024-W05"
    start: date
    pnl: Decimal
    per_symbol: Mapping[str, Decimal]
    equity: Decimal


@dataclass(frozen=True, slots=True)
class SymbolMetrics:
    symbol: str
    pnl: Decimal  # realised + unrealised
    realised: Decimal
    unrealised: Decimal
    fees: Decimal  # in the quote currency
    quantity: Decimal  # held now
    mark: Decimal | None  # the price the holding is valued at
    trades: int  # closed round trips
    wins: int
    losses: int
    win_rate: float | None


@dataclass(frozen=True, slots=True)
class TradingMetrics:
    as_of: datetime
    starting_cash: Decimal
    equity: Decimal
    pnl: Decimal
    realised: Decimal
    unrealised: Decimal
    fees: Decimal
    sharpe: float | None
    sortino: float | None
    max_drawdown: float
    current_drawdown: float
    win_rate: float | None
    trades: int
    wins: int
    losses: int
    per_symbol: tuple[SymbolMetrics, ...] = ()
    daily: tuple[PeriodPnl, ...] = ()
    weekly: tuple[PeriodPnl, ...] = ()
    equity_curve: tuple[EquityPoint, ...] = ()


def trading_metrics(
    ledger: Ledger, account: str, exchange: str, timeframe: str, now: datetime
) -> TradingMetrics:
    """The account's figures as of `now`, from its fills and the stored candles' closes."""
    if account not in ledger.accounts.names():
        return empty_metrics(ZERO, now)
    starting = ledger.accounts.starting_cash(account)
    fills = ledger.fills.history(account, until=now)
    if not fills:
        return empty_metrics(starting, now)
    symbols = sorted({f.symbol for f in fills})
    first = day_start(fills[0].filled_at)
    closes = ledger.browse.closes(exchange, symbols, timeframe, first)
    return compute_metrics(starting, fills, closes, now)


def empty_metrics(starting: Decimal, now: datetime) -> TradingMetrics:
    """Nothing traded yet: zeros, and None where a figure is undefined."""
    return TradingMetrics(
        as_of=now, starting_cash=starting, equity=starting, pnl=ZERO, realised=ZERO,
        unrealised=ZERO, fees=ZERO, sharpe=None, sortino=None, max_drawdown=0.0,
        current_drawdown=0.0, win_rate=None, trades=0, wins=0, losses=0,
        equity_curve=(EquityPoint(now, starting, 0.0),),
    )  # fmt: skip


def day_start(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time(), tzinfo=UTC)


class Marks:
    """Per symbol, every price known and when: candle closes and fill prices, by time."""

    def __init__(self, closes: Mapping[Symbol, Closes], fills: Sequence[Fill]) -> None:
        known: dict[str, list[tuple[datetime, int, Decimal]]] = defaultdict(list)
        for symbol, series in closes.items():
            known[symbol] += [(t, 0, c) for t, c in zip(series.times, series.closes, strict=True)]
        for fill in fills:  # at the same instant, a fill's price is the later news
            known[fill.symbol].append((fill.filled_at, 1, fill.price))
        self._times: dict[str, list[datetime]] = {}
        self._prices: dict[str, list[Decimal]] = {}
        for symbol, prices in known.items():
            prices.sort(key=lambda p: (p[0], p[1]))
            self._times[symbol] = [t for t, _, _ in prices]
            self._prices[symbol] = [p for _, _, p in prices]

    def at(self, symbol: str, moment: datetime) -> Decimal | None:
        """The newest price of `symbol` known at `moment` (None before any)."""
        k = bisect.bisect_right(self._times.get(symbol, []), moment)
        return self._prices[symbol][k - 1] if k else None


@dataclass
class _Book:
    """Positions, fill by fill; valued at the marks known at a moment."""

    starting: Decimal
    marks: Marks
    positions: dict[str, Position] = field(default_factory=dict)

    def apply(self, fill: Fill) -> None:
        current = self.positions.get(fill.symbol, Position(fill.symbol))
        self.positions[fill.symbol], _ = apply_fill(current, fill)

    def pnl(self, moment: datetime) -> dict[str, Decimal]:
        """Per symbol traded: realised plus the open quantity's unrealised P&L at the mark."""
        return {s: p.realised_pnl + self.unrealised(p, moment) for s, p in self.positions.items()}

    def unrealised(self, position: Position, moment: datetime) -> Decimal:
        if not position.quantity:
            return ZERO
        mark = self.marks.at(position.symbol, moment)
        return position.unrealised_pnl(mark if mark is not None else position.avg_price)

    def equity(self, moment: datetime) -> Decimal:
        return self.starting + sum(self.pnl(moment).values(), ZERO)


@dataclass
class _Walk:
    """The equity at each fill and each day's end, each day's P&L per symbol, and the book as
    it is now."""

    book: _Book
    curve: list[tuple[datetime, Decimal]] = field(default_factory=list)
    days: list[PeriodPnl] = field(default_factory=list)


def walk(starting: Decimal, fills: Sequence[Fill], marks: Marks, now: datetime) -> _Walk:
    out = _Walk(_Book(starting, marks))
    first = day_start(fills[0].filled_at)
    out.curve.append((first, starting))
    before: dict[str, Decimal] = {}
    pending = iter(fills)
    nxt = next(pending, None)
    for day, end in days_until(first, now):
        # A fill at midnight belongs to the day it opens; the current day ends at now, included.
        while nxt is not None and (nxt.filled_at < end or (end == now and nxt.filled_at <= now)):
            out.book.apply(nxt)
            out.curve.append((nxt.filled_at, out.book.equity(nxt.filled_at)))
            nxt = next(pending, None)
        after = out.book.pnl(end)
        moved = {s: v - before.get(s, ZERO) for s, v in after.items()}
        equity = starting + sum(after.values(), ZERO)
        out.days.append(PeriodPnl(day.isoformat(), day, sum(moved.values(), ZERO), moved, equity))
        out.curve.append((end, equity))
        before = after
    return out


def days_until(first: datetime, now: datetime) -> Iterator[tuple[date, datetime]]:
    """Each UTC day from `first`'s to now's, with its end (now, for the current day)."""
    day = first.date()
    while True:
        end = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
        if end >= now:
            yield day, now
            return
        yield day, end
        day += timedelta(days=1)


def weeks_of(days: Sequence[PeriodPnl]) -> tuple[PeriodPnl, ...]:
    """The days summed by ISO week (Monday first); a week's equity is its last day's."""
    weeks: dict[tuple[int, int], list[PeriodPnl]] = defaultdict(list)
    for d in days:
        year, week, _ = d.start.isocalendar()
        weeks[(year, week)].append(d)
    out = []
    for (year, week), mine in weeks.items():
        per_symbol: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for d in mine:
            for s, v in d.per_symbol.items():
                per_symbol[s] += v
        monday = date.fromisocalendar(year, week, 1)
        total = sum((d.pnl for d in mine), ZERO)
        out.append(
            PeriodPnl(f"{year}-W{week:02d}", monday, total, dict(per_symbol), mine[-1].equity)
        )
    return tuple(out)


def drawdowns(curve: Sequence[tuple[datetime, Decimal]]) -> tuple[EquityPoint, ...]:
    peak, out = ZERO, []
    for moment, value in curve:
        peak = max(peak, value)
        out.append(EquityPoint(moment, value, float(1 - value / peak) if peak > 0 else 0.0))
    return tuple(out)


def daily_ratios(starting: Decimal, days: Sequence[PeriodPnl]) -> tuple[float | None, float | None]:
    values = np.array([float(starting)] + [float(d.equity) for d in days])
    if len(values) < 3 or (values <= 0).any():
        return None, None
    sharpe, sortino = sharpe_sortino(values[1:] / values[:-1] - 1.0, DAYS_PER_YEAR)
    return _finite(sharpe), _finite(sortino)


def _finite(x: float | None) -> float | None:
    """JSON has no NaN or infinity: an undefined ratio is None."""
    return x if x is not None and math.isfinite(x) else None


def symbol_metrics(
    fills: Sequence[Fill], book: _Book, marks: Marks, now: datetime
) -> tuple[SymbolMetrics, ...]:
    """Per symbol: P&L now, fees, the holding, and its closed round trips' record."""
    fees: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for fill in fills:
        fees[fill.symbol] += fee_in_quote(fill)
    pnl = book.pnl(now)
    out = []
    for symbol, position in sorted(book.positions.items()):
        mark = marks.at(symbol, now)
        mine = [f for f in fills if f.symbol == symbol]
        trips = round_trips(mine, {symbol: mark or position.avg_price}, marked_at=now)
        record = pair_stats(symbol, [t for t in trips if not t.is_open], Decimal(1))
        out.append(SymbolMetrics(
            symbol=symbol, pnl=pnl[symbol], realised=position.realised_pnl,
            unrealised=pnl[symbol] - position.realised_pnl, fees=fees[symbol],
            quantity=position.quantity, mark=mark if position.quantity else None,
            trades=record.trades, wins=record.wins, losses=record.losses,
            win_rate=record.win_rate if record.trades else None,
        ))  # fmt: skip
    return tuple(out)


def compute_metrics(
    starting: Decimal, fills: Sequence[Fill], closes: Mapping[Symbol, Closes], now: datetime
) -> TradingMetrics:
    """The figures from the fills (oldest first, none after `now`) and the closes known."""
    marks = Marks(closes, fills)
    walked = walk(starting, fills, marks, now)
    curve = drawdowns(walked.curve)
    symbols = symbol_metrics(fills, walked.book, marks, now)
    sharpe, sortino = daily_ratios(starting, walked.days)
    trades = sum(s.trades for s in symbols)
    wins = sum(s.wins for s in symbols)
    pnl = sum((s.pnl for s in symbols), ZERO)
    return TradingMetrics(
        as_of=now, starting_cash=starting, equity=starting + pnl, pnl=pnl,
        realised=sum((s.realised for s in symbols), ZERO),
        unrealised=sum((s.unrealised for s in symbols), ZERO),
        fees=sum((s.fees for s in symbols), ZERO), sharpe=sharpe, sortino=sortino,
        max_drawdown=max(p.drawdown for p in curve), current_drawdown=curve[-1].drawdown,
        win_rate=wins / trades if trades else None, trades=trades, wins=wins,
        losses=sum(s.losses for s in symbols), per_symbol=symbols, daily=tuple(walked.days),
        weekly=weeks_of(walked.days), equity_curve=curve,
    )  # fmt: skip
