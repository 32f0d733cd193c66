"""Cost-aware evaluation of a position series, vectorised. No I/O here.

`position[t]` is the fraction of equity held after deciding at the close of candle t (long only,
0..1). It earns the move from close t to close t+1, never the move into close t: a decision
cannot profit from the candle it was made on. Every change of position pays
(fee_rate + slippage) x |change| of the equity at that close. A position still held after the
last candle is closed at its close and pays its exit (the honest end of an evaluation).

Per candle t, as fractions of the equity at close t-1:
    gross[t] = position[t-1] x (close[t] / close[t-1] - 1)
    cost[t]  = (1 + gross[t]) x (fee_rate + slippage) x |position[t] - position[t-1]|
    net[t]   = gross[t] - cost[t]            (position[-1] = 0)
A fractional position is taken as rebalanced to its fraction every candle, free of charge: exact
for 0/1 positions, the usual approximation otherwise. Equity starts at 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal

import numpy as np
import pandas as pd

from core.backtest.stats import drawdown, sharpe_sortino
from core.errors import FatalError


class PolicyEvalError(FatalError, ValueError):
    """Prices, positions or costs that cannot be evaluated."""


@dataclass(frozen=True, slots=True)
class TradingResult:
    net_return: float  # compounded, after costs
    sharpe: float  # annualised; 0 when the returns do not vary
    sortino: float  # annualised, downside deviation over every candle; 0 without a loss
    max_drawdown: float  # positive fraction of the highest equity so far
    turnover: float  # sum of |position change|, in units of equity
    fees: float  # costs paid, as a fraction of the starting equity
    trades: int  # entries (flat -> in a position)
    exposure: float  # fraction of candles with a position after the close

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True, slots=True, eq=False)  # pandas fields do not compare to one bool
class Ledger:
    """Per candle (indexed like the closes): net and cost as fractions of the equity at the
    previous close, and the position after the close (0 at the end when closed there)."""

    net: pd.Series
    cost: pd.Series
    position: pd.Series


def _checked(
    close: pd.Series, position: pd.Series, fee_rate: float, slippage: float
) -> tuple[np.ndarray, np.ndarray]:
    if len(close) == 0:
        raise PolicyEvalError("no candles to evaluate")
    if not close.index.equals(position.index):
        raise PolicyEvalError("close and position must have the same index, candle for candle")
    c = close.to_numpy(dtype=np.float64)
    p = position.to_numpy(dtype=np.float64)
    if not (np.isfinite(c).all() and (c > 0).all()):
        raise PolicyEvalError("closes must be finite and above zero")
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise PolicyEvalError("positions must be fractions in [0, 1] (long only), with no NaN")
    if not (fee_rate >= 0 and slippage >= 0 and fee_rate + slippage < 1):
        raise PolicyEvalError(f"bad costs: fee_rate {fee_rate}, slippage {slippage}")
    return c, p


def ledger(
    close: pd.Series,
    position: pd.Series,
    fee_rate: float,
    slippage: float,
    close_at_end: bool = True,
) -> Ledger:
    """The per-candle accounting of the module docstring; `close` and `position` share one
    index (candle open times)."""
    c, p = _checked(close, position, fee_rate, slippage)
    if close_at_end:
        p = p.copy()
        p[-1] = 0.0
    before = np.concatenate(([0.0], p[:-1]))
    moves = np.concatenate(([0.0], c[1:] / c[:-1] - 1.0))
    gross = before * moves
    cost = (1.0 + gross) * (fee_rate + slippage) * np.abs(p - before)
    index = close.index
    return Ledger(
        net=pd.Series(gross - cost, index=index, name="net_return"),
        cost=pd.Series(cost, index=index, name="cost"),
        position=pd.Series(p, index=index, name="position"),
    )


def net_returns(
    close: pd.Series,
    position: pd.Series,
    fee_rate: float,
    slippage: float,
    close_at_end: bool = True,
) -> pd.Series:
    """Per-candle net returns of equity: what several symbols are combined from."""
    return ledger(close, position, fee_rate, slippage, close_at_end).net


def _annualised(net: np.ndarray, periods_per_year: float) -> tuple[float, float]:
    """Sharpe and Sortino as core.backtest.stats computes them; 0 where undefined."""
    sharpe, sortino = sharpe_sortino(net, periods_per_year)
    return sharpe or 0.0, sortino or 0.0


def _entries(position: np.ndarray) -> int:
    before = np.concatenate(([0.0], position[:-1]))
    return int(((position > 0) & (before == 0)).sum())


def summarise(book: Ledger, periods_per_year: float) -> TradingResult:
    """The figures of one ledger (one symbol, or a portfolio from `combine_ledgers`)."""
    if periods_per_year <= 0:
        raise PolicyEvalError(f"periods_per_year must be > 0, got {periods_per_year}")
    net = book.net.to_numpy(dtype=np.float64)
    p = book.position.to_numpy(dtype=np.float64)
    equity = np.cumprod(1.0 + net)
    before = np.concatenate(([1.0], equity[:-1]))
    sharpe, sortino = _annualised(net, periods_per_year)
    return TradingResult(
        net_return=float(equity[-1] - 1.0),
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown=float(drawdown(pd.Series(equity), Decimal(1)).max()),
        turnover=float(np.abs(np.diff(p, prepend=0.0)).sum()),
        fees=float((before * book.cost.to_numpy(dtype=np.float64)).sum()),
        trades=_entries(p),
        exposure=float((p > 0).mean()),
    )


def evaluate_positions(
    close: pd.Series,
    position: pd.Series,
    fee_rate: float,
    slippage: float,
    periods_per_year: float,
) -> TradingResult:
    """One symbol's result; periods_per_year is 8760 for 1h candles."""
    return summarise(ledger(close, position, fee_rate, slippage), periods_per_year)


def buy_and_hold(
    close: pd.Series, fee_rate: float, slippage: float, periods_per_year: float
) -> TradingResult:
    """Buy at the first close, sell at the last: (1 - cost)^2 x last/first - 1."""
    return evaluate_positions(
        close, pd.Series(1.0, index=close.index), fee_rate, slippage, periods_per_year
    )


def portfolio_returns(per_symbol: Mapping[str, pd.Series]) -> pd.Series:
    """Equal-weight portfolio of per-candle net returns: 1/N of the equity per symbol,
    rebalanced every candle; a symbol without a candle at a time sits in cash (0)."""
    if not per_symbol:
        raise PolicyEvalError("no symbols to combine")
    frame = pd.DataFrame(dict(per_symbol)).sort_index().fillna(0.0)
    return frame.mean(axis=1).rename("net_return")


def combine_ledgers(per_symbol: Mapping[str, Ledger]) -> Ledger:
    """The equal-weight portfolio as one ledger: net and cost are the sleeves' means (exact
    for sleeves rebalanced to 1/N), position the mean fraction of equity held."""
    net = portfolio_returns({s: b.net for s, b in per_symbol.items()})
    cost = portfolio_returns({s: b.cost for s, b in per_symbol.items()}).rename("cost")
    held = portfolio_returns({s: b.position for s, b in per_symbol.items()}).rename("position")
    return Ledger(net=net, cost=cost, position=held)


def combine_results(per_symbol: Mapping[str, Ledger], periods_per_year: float) -> TradingResult:
    """The equal-weight portfolio's figures. Returns, Sharpe, drawdown and fees are the
    portfolio's; trades are every symbol's entries; turnover and exposure are the mean over
    symbols (each sleeve holds 1/N of the equity)."""
    book = combine_ledgers(per_symbol)
    whole = summarise(book, periods_per_year)
    sleeves = [summarise(b, periods_per_year) for b in per_symbol.values()]
    return TradingResult(
        net_return=whole.net_return,
        sharpe=whole.sharpe,
        sortino=whole.sortino,
        max_drawdown=whole.max_drawdown,
        turnover=float(np.mean([s.turnover for s in sleeves])),
        fees=whole.fees,
        trades=sum(s.trades for s in sleeves),
        exposure=float(np.mean([s.exposure for s in sleeves])),
    )


def trade_returns(book: Ledger) -> np.ndarray:
    """Net return of each round trip, oldest first: compounded over the candles from its entry
    (entry cost included) to its exit (the last move and the exit cost included). The input of
    core.models.policy.significant_edge."""
    p = book.position.to_numpy(dtype=np.float64)
    before = np.concatenate(([0.0], p[:-1]))
    trip = np.cumsum((p > 0) & (before == 0))
    inside = (p > 0) | (before > 0)
    if not inside.any():
        return np.zeros(0, dtype=np.float64)
    logs = np.log1p(book.net.to_numpy(dtype=np.float64))
    per_trip = np.bincount(trip[inside], weights=logs[inside])[1:]
    return np.expm1(per_trip)
