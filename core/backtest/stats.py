"""What a backtest made: round trips, the equity curve at every candle close, and the figures a
freqtrade-style report shows (per pair and for the run).

Accounting is core.portfolio's, never derived again here: realised P&L is `apply_fill`'s, cash
is `cash_after`'s and the final equity is `equity`'s, in exact decimals. The curve and the
ratios are floats. A fill belongs to the candle whose open time it carries and is in the
equity at that candle's close. Fields named `*_pct` are percent (1.5 is 1.5 %); every other
return, drawdown and rate is a fraction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import accumulate

import numpy as np
import pandas as pd

from core.candles.timeframe import timeframe_delta
from core.orders import Fill
from core.portfolio import Position, apply_fill, cash_after, equity
from core.types import Side, Symbol, to_decimal

ZERO = Decimal(0)
YEAR = timedelta(days=365)
TOTAL = "TOTAL"


class BacktestInputError(ValueError):
    """Fills and candles that cannot be reported on (a fill without candles, no candles)."""


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """One position in one symbol, from the fill that opened it (quantity 0 -> above 0) to the
    fill that brought it back to 0; `closed_at` is None when it was still open at the end and
    its `pnl` then includes the unrealised P&L at the last close (`marked_at`)."""

    symbol: Symbol
    opened_at: datetime
    closed_at: datetime | None
    quantity: Decimal  # bought, over every buy of the trip (a fee in the base asset not taken off)
    entry_price: Decimal  # average buy price
    exit_price: Decimal | None  # average sell price; None before any sell
    fees: Decimal  # in the quote currency (a fee in the base asset at its fill's price)
    pnl: Decimal  # net of fees; realised, plus unrealised when open
    cost: Decimal  # what the buys cost: sum of price x quantity
    marked_at: datetime | None = None  # when an open trip was valued

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    @property
    def ret(self) -> float:
        return float(self.pnl / self.cost) if self.cost else 0.0

    @property
    def duration(self) -> timedelta | None:
        end = self.closed_at or self.marked_at
        return end - self.opened_at if end is not None else None


@dataclass(slots=True)
class _Trip:
    """A round trip being built, fill by fill."""

    opened_at: datetime
    bought: Decimal = ZERO
    cost: Decimal = ZERO
    sold: Decimal = ZERO
    proceeds: Decimal = ZERO
    fees: Decimal = ZERO
    realised: Decimal = ZERO

    def add(self, fill: Fill, realised: Decimal) -> None:
        gross = fill.price * fill.quantity
        if fill.side is Side.BUY:
            self.bought += fill.quantity
            self.cost += gross
        else:
            self.sold += fill.quantity
            self.proceeds += gross
        self.fees += fee_in_quote(fill)
        self.realised += realised

    def finish(
        self,
        symbol: Symbol,
        closed_at: datetime | None,
        unrealised: Decimal,
        marked_at: datetime | None,
    ) -> RoundTrip:
        return RoundTrip(
            symbol=symbol,
            opened_at=self.opened_at,
            closed_at=closed_at,
            quantity=self.bought,
            entry_price=self.cost / self.bought,
            exit_price=self.proceeds / self.sold if self.sold else None,
            fees=self.fees,
            pnl=self.realised + unrealised,
            cost=self.cost,
            marked_at=marked_at,
        )


def fee_in_quote(fill: Fill) -> Decimal:
    return fill.quote_fee + fill.base_fee * fill.price


def by_time(fills: Iterable[Fill]) -> list[Fill]:
    """Oldest first; fills at the same time keep the order they came in."""
    return sorted(fills, key=lambda f: f.filled_at)


def round_trips(
    fills: Iterable[Fill],
    last_prices: Mapping[str, Decimal],
    marked_at: datetime | None = None,
) -> list[RoundTrip]:
    """Every round trip, oldest first; an open one is valued at its symbol's last price
    (raises BacktestInputError when that price is missing). A sell of more than is held raises
    core.portfolio.OverSell."""
    positions: dict[Symbol, Position] = {}
    building: dict[Symbol, _Trip] = {}
    done: list[RoundTrip] = []
    for fill in by_time(fills):
        position = positions.get(fill.symbol, Position(fill.symbol))
        if position.quantity == 0 and fill.side is Side.BUY:
            building[fill.symbol] = _Trip(opened_at=fill.filled_at)
        position, realised = apply_fill(position, fill)
        positions[fill.symbol] = position
        building[fill.symbol].add(fill, realised)
        if position.quantity == 0:
            done.append(building.pop(fill.symbol).finish(fill.symbol, fill.filled_at, ZERO, None))
    for symbol, trip in building.items():
        if symbol not in last_prices:
            raise BacktestInputError(f"{symbol}: a round trip is open but there is no last price")
        unrealised = positions[symbol].unrealised_pnl(last_prices[symbol])
        done.append(trip.finish(symbol, None, unrealised, marked_at))
    return sorted(done, key=lambda t: (t.opened_at, t.symbol))


def price_frame(closes: Mapping[str, pd.Series]) -> pd.DataFrame:
    """Closes side by side on every candle open time any symbol has, carried forward."""
    if not closes or all(len(s) == 0 for s in closes.values()):
        raise BacktestInputError("no candles: closes are empty")
    frame = pd.DataFrame({s: c.astype(float) for s, c in closes.items()}).sort_index()
    return frame.ffill()


def _stepwise(slots: np.ndarray, after: Sequence[float], candles: int, before: float) -> np.ndarray:
    """Per candle, the value after the last fill in that candle or an earlier one."""
    seen = np.searchsorted(slots, np.arange(candles), side="right")
    return np.concatenate(([before], np.asarray(after, dtype=float)))[seen]


def _candle_slots(index: pd.DatetimeIndex, fills: Sequence[Fill]) -> np.ndarray:
    """The position of the candle each fill belongs to (a fill before the first candle counts
    in the first)."""
    if not fills:
        return np.zeros(0, dtype=np.int64)
    times = pd.DatetimeIndex([f.filled_at for f in fills])
    return np.clip(index.searchsorted(times, side="right") - 1, 0, None)


def _positions_of(fills: Sequence[Fill]) -> dict[Symbol, list[int]]:
    """Per symbol, where its fills are in `fills`."""
    found: dict[Symbol, list[int]] = {}
    for k, fill in enumerate(fills):
        found.setdefault(fill.symbol, []).append(k)
    return found


@dataclass(frozen=True, slots=True)
class _Curve:
    equity: pd.Series  # by candle close time
    holding: np.ndarray  # bool per candle: any position held at its close


def _curve(
    starting_cash: Decimal, fills: Sequence[Fill], prices: pd.DataFrame, step: timedelta
) -> _Curve:
    missing = sorted({f.symbol for f in fills} - set(prices.columns))
    if missing:
        raise BacktestInputError(f"fills in {', '.join(missing)} but no candles for them")
    n = len(prices)
    slots = _candle_slots(prices.index, fills)
    cash = accumulate(fills, cash_after, initial=starting_cash)
    values = _stepwise(slots, [float(c) for c in list(cash)[1:]], n, float(starting_cash))
    holding = np.zeros(n, dtype=bool)
    for symbol, mine in _positions_of(fills).items():
        held = accumulate((fills[k].holding_change for k in mine), initial=ZERO)
        units = _stepwise(slots[mine], [float(q) for q in list(held)[1:]], n, 0.0)
        values += np.where(units != 0, units * prices[symbol].to_numpy(), 0.0)
        holding |= units != 0
    return _Curve(pd.Series(values, index=prices.index + step, name="equity"), holding)


def _infer_step(index: pd.DatetimeIndex) -> timedelta:
    if len(index) < 2:
        raise BacktestInputError("one candle: pass the timeframe, it cannot be inferred")
    return pd.Timedelta(np.diff(index.asi8).min(), unit="ns").to_pytimedelta()


def equity_curve(
    starting_cash: Decimal,
    fills: Sequence[Fill],
    closes: Mapping[str, pd.Series],
    timeframe: str | None = None,
) -> pd.Series:
    """Equity (cash plus every holding at its close, core.portfolio.equity's definition) at
    every candle's close time. `closes`: per symbol, closes indexed by candle open time (UTC);
    without `timeframe` the candle length is the smallest spacing of those times."""
    prices = price_frame(closes)
    step = timeframe_delta(timeframe) if timeframe else _infer_step(prices.index)
    return _curve(starting_cash, by_time(fills), prices, step).equity


def drawdown(equity_values: pd.Series, starting_cash: Decimal) -> pd.Series:
    """Per point, how far (a fraction, >= 0) equity is below its highest so far, the
    starting cash included."""
    peak = np.maximum.accumulate(np.concatenate(([float(starting_cash)], equity_values)))[1:]
    return pd.Series(1.0 - equity_values.to_numpy() / peak, index=equity_values.index)


@dataclass(frozen=True, slots=True)
class PairStats:
    symbol: str  # or TOTAL
    trades: int
    wins: int
    draws: int
    losses: int
    win_rate: float  # wins / trades; 0 without trades
    avg_profit_pct: float  # mean of the trades' returns on their cost, in percent
    total_profit: Decimal
    total_profit_pct: float  # total profit as a percent of the starting cash
    fees: Decimal
    avg_duration: timedelta | None  # None without trades


@dataclass(frozen=True, slots=True)
class RunStats:
    timeframe: str
    start: datetime  # the first candle's open
    end: datetime  # the last candle's close
    starting_cash: Decimal
    final_equity: Decimal
    total_return: float
    cagr: float
    max_drawdown: float
    max_drawdown_start: datetime | None  # the peak it fell from; None without a drawdown
    max_drawdown_end: datetime | None  # the trough
    sharpe: float | None  # None when the returns do not vary (a flat curve)
    sortino: float | None  # None without a losing candle
    calmar: float | None  # None without a drawdown
    exposure: float  # fraction of candles with any position held at the close
    fees: Decimal
    trades: int
    win_rate: float
    buy_and_hold_return: float  # equal weight: mean of the pairs' market changes
    market_change: dict[str, float] = field(default_factory=dict)
    best_pair: str | None = None  # by total profit, among pairs that traded
    worst_pair: str | None = None


@dataclass(frozen=True, slots=True, eq=False)  # pandas fields do not compare to one bool
class BacktestStats:
    pairs: list[PairStats]
    total: PairStats
    run: RunStats
    equity: pd.Series  # by candle close time, float
    trades: list[RoundTrip]
    monthly_returns: pd.Series  # month-end index, fraction
    fills: tuple[Fill, ...] = ()  # oldest first: what the report marks on the prices


def pair_stats(symbol: str, trips: Sequence[RoundTrip], starting_cash: Decimal) -> PairStats:
    profit = sum((t.pnl for t in trips), ZERO)
    durations = [d for t in trips if (d := t.duration) is not None]
    wins = sum(1 for t in trips if t.pnl > 0)
    losses = sum(1 for t in trips if t.pnl < 0)
    return PairStats(
        symbol=symbol,
        trades=len(trips),
        wins=wins,
        draws=len(trips) - wins - losses,
        losses=losses,
        win_rate=wins / len(trips) if trips else 0.0,
        avg_profit_pct=float(np.mean([t.ret for t in trips])) * 100 if trips else 0.0,
        total_profit=profit,
        total_profit_pct=float(profit / starting_cash) * 100,
        fees=sum((t.fees for t in trips), ZERO),
        avg_duration=sum(durations, timedelta()) / len(durations) if durations else None,
    )


def market_change(closes: Mapping[str, pd.Series]) -> dict[str, float]:
    """Per symbol with candles, last close / first close - 1 over the candles given."""
    changes = {}
    for symbol, series in closes.items():
        known = series.dropna()
        if len(known):
            changes[symbol] = float(known.iloc[-1] / known.iloc[0] - 1.0)
    return changes


@dataclass(frozen=True, slots=True)
class _Ratios:
    sharpe: float | None
    sortino: float | None
    cagr: float


def sharpe_sortino(
    returns: np.ndarray, periods_per_year: float
) -> tuple[float | None, float | None]:
    """Annualised Sharpe (sample standard deviation) and Sortino (the downside deviation: root
    mean square of the returns below 0, over every period) of per-period returns; None where
    undefined (no spread, no loss)."""
    mean = float(returns.mean()) if len(returns) else 0.0
    spread = float(returns.std(ddof=1)) if len(returns) > 1 else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))) if len(returns) else 0.0
    root = math.sqrt(periods_per_year)
    return (
        mean / spread * root if spread > 0 else None,
        mean / downside * root if downside > 0 else None,
    )


def max_drawdown_of(values: np.ndarray) -> float:
    """The deepest fall from a running peak, as a positive fraction of it."""
    return float(np.max(1.0 - values / np.maximum.accumulate(values))) if len(values) else 0.0


def _ratios(values: np.ndarray, candles: int, step: timedelta) -> _Ratios:
    """`values`: the starting cash, then equity at each close; returns per candle, annualised
    with 365 days / timeframe periods a year."""
    sharpe, sortino = sharpe_sortino(values[1:] / values[:-1] - 1.0, YEAR / step)
    return _Ratios(sharpe, sortino, cagr=_cagr(values[-1] / values[0], candles * step / YEAR))


def _cagr(growth: float, years: float) -> float:
    if growth <= 0:
        return -1.0
    try:
        return math.exp(math.log(growth) / years) - 1.0
    except OverflowError:
        return math.inf


@dataclass(frozen=True, slots=True)
class _Drawdown:
    depth: float
    start: datetime | None
    end: datetime | None


def _max_drawdown(values: np.ndarray, times: pd.DatetimeIndex) -> _Drawdown:
    """`values` and `times`: the starting cash at the first open, then equity at each close."""
    peak = np.maximum.accumulate(values)
    depth = 1.0 - values / peak
    trough = int(np.argmax(depth))
    if depth[trough] <= 0:
        return _Drawdown(0.0, None, None)
    top = int(np.flatnonzero(values[: trough + 1] == peak[trough])[-1])
    return _Drawdown(
        float(depth[trough]), times[top].to_pydatetime(), times[trough].to_pydatetime()
    )


def monthly_returns(equity_values: pd.Series, starting_cash: Decimal, step: timedelta) -> pd.Series:
    """Return per calendar month (of the candles' open times), month-end index; the first
    month's is on the starting cash."""
    by_open = pd.Series(equity_values.to_numpy(), index=equity_values.index - step)
    ends = by_open.resample("ME").last().ffill()
    before = ends.shift(1, fill_value=float(starting_cash))
    return (ends / before - 1.0).rename("monthly_return")


def _final_equity(cash: Decimal, fills: Sequence[Fill], closes: Mapping[str, pd.Series]) -> Decimal:
    held: dict[Symbol, Decimal] = {}
    for fill in fills:
        cash = cash_after(cash, fill)
        held[fill.symbol] = held.get(fill.symbol, ZERO) + fill.holding_change
    return equity(cash, held, _last_prices(closes))


def _last_prices(closes: Mapping[str, pd.Series]) -> dict[Symbol, Decimal]:
    return {
        Symbol(s): to_decimal(float(c.dropna().iloc[-1]))
        for s, c in closes.items()
        if len(c.dropna())
    }


def _ranked(pairs: Sequence[PairStats]) -> tuple[str | None, str | None]:
    traded = sorted((p for p in pairs if p.trades), key=lambda p: p.total_profit)
    return (traded[-1].symbol, traded[0].symbol) if traded else (None, None)


def compute_stats(
    starting_cash: Decimal,
    fills: Sequence[Fill],
    closes: Mapping[str, pd.Series],
    timeframe: str,
) -> BacktestStats:
    """Everything the report shows, from the fills and every traded symbol's closes (indexed by
    candle open time, UTC, all of `timeframe`). O(fills + candles)."""
    if starting_cash <= 0:
        raise BacktestInputError(f"starting cash must be above zero, not {starting_cash}")
    step = timeframe_delta(timeframe)
    ordered = by_time(fills)
    prices = price_frame(closes)
    curve = _curve(starting_cash, ordered, prices, step)
    end = (prices.index[-1] + step).to_pydatetime()
    trips = round_trips(ordered, _last_prices(closes), marked_at=end)
    per_symbol: dict[str, list[RoundTrip]] = {s: [] for s in prices.columns}
    for trip in trips:
        per_symbol[trip.symbol].append(trip)
    pairs = [pair_stats(s, mine, starting_cash) for s, mine in per_symbol.items()]
    total = pair_stats(TOTAL, trips, starting_cash)
    run = _run_stats(starting_cash, ordered, closes, curve, total, pairs, timeframe)
    return BacktestStats(
        pairs=pairs,
        total=total,
        run=run,
        equity=curve.equity,
        trades=trips,
        monthly_returns=monthly_returns(curve.equity, starting_cash, step),
        fills=tuple(ordered),
    )


def _run_stats(
    starting_cash: Decimal,
    fills: Sequence[Fill],
    closes: Mapping[str, pd.Series],
    curve: _Curve,
    total: PairStats,
    pairs: Sequence[PairStats],
    timeframe: str,
) -> RunStats:
    step = timeframe_delta(timeframe)
    start = curve.equity.index[0] - step
    values = np.concatenate(([float(starting_cash)], curve.equity.to_numpy()))
    times = curve.equity.index.insert(0, start)
    ratios = _ratios(values, len(curve.equity), step)
    worst = _max_drawdown(values, times)
    final = _final_equity(starting_cash, fills, closes)
    changes = market_change(closes)
    best_pair, worst_pair = _ranked(pairs)
    return RunStats(
        timeframe=timeframe,
        start=start.to_pydatetime(),
        end=curve.equity.index[-1].to_pydatetime(),
        starting_cash=starting_cash,
        final_equity=final,
        total_return=float(final / starting_cash) - 1.0,
        cagr=ratios.cagr,
        max_drawdown=worst.depth,
        max_drawdown_start=worst.start,
        max_drawdown_end=worst.end,
        sharpe=ratios.sharpe,
        sortino=ratios.sortino,
        calmar=ratios.cagr / worst.depth if worst.depth > 0 else None,
        exposure=float(curve.holding.mean()),
        fees=total.fees,
        trades=total.trades,
        win_rate=total.win_rate,
        buy_and_hold_return=float(np.mean(list(changes.values()))) if changes else 0.0,
        market_change=changes,
        best_pair=best_pair,
        worst_pair=worst_pair,
    )
