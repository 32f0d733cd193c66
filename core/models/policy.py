"""The decision policy, one for the evaluation and for live decisions. No I/O here.

The model gives p = P(forward log return over the horizon > cost). With what a labelled-1 and
a labelled-0 row earned on average in training (a Payoff), p becomes an expected net log return
of entering now (the edge). The policy enters only when that edge beats costs, holds for the
label horizon (the bet the label describes) unless the edge reverses, sizes by how large the
edge is, and trades not at all when the model's out-of-sample edge was not significant: not
trading is a correct answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.errors import FatalError
from core.types import Action


class PolicyError(FatalError, ValueError):
    """A policy input that cannot be decided on (bad configuration, inconsistent arrays)."""


@dataclass(frozen=True, slots=True)
class Payoff:
    """Measured on training rows and stored with the model; all log returns."""

    gain: float  # mean forward log return of rows labelled 1
    loss: float  # mean of -(forward log return) of rows labelled 0
    cost: float  # round-trip fee + slippage as a log return

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) for v in (self.gain, self.loss, self.cost)):
            raise PolicyError(f"payoff values must be finite: {self}")
        if self.cost < 0:
            raise PolicyError(f"cost must not be negative, got {self.cost}")


def round_trip_cost(fee_rate: float, slippage: float) -> float:
    """Entry and exit each keep (1 - fee_rate - slippage) of the equity traded
    (core.backtest.policy_eval's accounting), so a round trip costs this much log return."""
    per_side = fee_rate + slippage
    if not 0.0 <= per_side < 1.0:
        raise PolicyError(f"fee_rate + slippage must be in [0, 1), got {per_side}")
    return -2.0 * math.log1p(-per_side)


def payoff_of(forward_returns: np.ndarray, labels: np.ndarray, cost: float) -> Payoff:
    """Rows where either value is NaN (no future yet) are left out."""
    r = np.asarray(forward_returns, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if r.shape != y.shape:
        raise PolicyError(f"forward returns {r.shape} and labels {y.shape} differ in shape")
    known = np.isfinite(r) & np.isfinite(y)
    ups, downs = known & (y == 1), known & (y == 0)
    if not ups.any() or not downs.any():
        raise PolicyError(
            f"a payoff needs rows of both labels, got {int(ups.sum())} ones and "
            f"{int(downs.sum())} zeros"
        )
    return Payoff(gain=float(r[ups].mean()), loss=float(-r[downs].mean()), cost=float(cost))


def expected_edge(p: float | np.ndarray, payoff: Payoff) -> float | np.ndarray:
    """p * gain - (1 - p) * loss - cost: the expected net log return of entering now."""
    edge = p * payoff.gain - (1.0 - p) * payoff.loss - payoff.cost
    return float(edge) if np.ndim(edge) == 0 else np.asarray(edge, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    horizon: int  # candles: the label horizon
    min_edge: float = 0.0  # enter only when edge > min_edge
    exit_edge: float = 0.0  # leave early when edge < -exit_edge (the edge reversed)
    full_size_edge: float = 0.004  # edge at which the position is full size
    min_fraction: float = 0.25  # smallest position, as a fraction of full size

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise PolicyError(f"horizon must be >= 1 candle, got {self.horizon}")
        if not (self.min_edge >= 0 and self.exit_edge >= 0):
            # A negative threshold would enter on an expected loss, or call a gain a reversal.
            raise PolicyError(
                f"min_edge and exit_edge must be >= 0, got {self.min_edge}, {self.exit_edge}"
            )
        if not self.full_size_edge > 0:
            raise PolicyError(f"full_size_edge must be > 0, got {self.full_size_edge}")
        if not 0 < self.min_fraction <= 1:
            raise PolicyError(f"min_fraction must be in (0, 1], got {self.min_fraction}")


@dataclass(frozen=True, slots=True)
class Holding:
    fraction: float  # of full size; 0 when flat
    held_for: int  # candles since entry, as of the last decision (0 at the entry's own close)

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0 or self.held_for < 0:
            raise PolicyError(f"bad holding: fraction {self.fraction}, held_for {self.held_for}")


FLAT = Holding(0.0, 0)
# Plain names: an enum member read is a descriptor call, and `step` runs at every decision.
_BUY, _SELL, _HOLD = Action.BUY, Action.SELL, Action.HOLD


def entry_fraction(edge: float, cfg: PolicyConfig) -> float:
    """Size by confidence: linear in the edge, at least min_fraction, at most full size."""
    return float(min(max(edge / cfg.full_size_edge, cfg.min_fraction), 1.0))


def step(
    holding: Holding, edge: float, cfg: PolicyConfig, tradeable: bool = True
) -> tuple[Action, float, Holding]:
    """Decide at one candle's close. Returns the action, the fraction it trades (bought, or all
    that is sold; 0 for HOLD) and the holding after it.

    A NaN edge (no prediction) never enters and never counts as a reversal: a holding then
    leaves only once its horizon has passed. Not tradeable: never BUY; a holding still exits.
    """
    known = not math.isnan(edge)
    if holding.fraction == 0.0:
        if tradeable and known and edge > cfg.min_edge:
            fraction = entry_fraction(edge, cfg)
            return _BUY, fraction, Holding(fraction, 0)
        return _HOLD, 0.0, FLAT
    held_for = holding.held_for + 1  # the candle that just closed was held
    reversed_ = known and edge < -cfg.exit_edge
    expired = held_for >= cfg.horizon and not (known and edge > cfg.min_edge)
    if reversed_ or expired:
        return _SELL, holding.fraction, FLAT
    return _HOLD, 0.0, Holding(holding.fraction, held_for)


def holds_flat(edges: np.ndarray, cfg: PolicyConfig, tradeable: bool = True) -> np.ndarray:
    """`step(FLAT, edge, cfg, tradeable)` is HOLD, for each of `edges` at once: a flat holding
    enters only on a known edge above `min_edge` (NaN compares False), and only if tradeable.
    A backtest asks this of every candle of every symbol."""
    e = np.asarray(edges, dtype=np.float64)
    if not tradeable:
        return np.ones(e.shape, dtype=bool)
    return ~(e > cfg.min_edge)


def positions(
    edges: np.ndarray, cfg: PolicyConfig, tradeable: bool | np.ndarray = True
) -> np.ndarray:
    """The fraction held after deciding at each candle, by iterating `step` from flat.
    `tradeable` is one flag for all candles or one per candle."""
    e = np.asarray(edges, dtype=np.float64)
    allowed = np.broadcast_to(np.asarray(tradeable, dtype=bool), e.shape)
    out = np.zeros(e.shape, dtype=np.float64)
    holding = FLAT
    # A plain loop: the decision is path-dependent and a few thousand steps cost milliseconds.
    for i in range(e.size):
        _, _, holding = step(holding, float(e[i]), cfg, bool(allowed[i]))
        out[i] = holding.fraction
    return out


def edge_t_statistic(net_returns_per_trade: np.ndarray) -> float:
    """t-statistic of the mean per-trade net return (sample standard deviation); +inf for
    identical positive returns, 0 with fewer than two trades or identical non-positive ones."""
    r = np.asarray(net_returns_per_trade, dtype=np.float64)
    if not np.isfinite(r).all():
        raise PolicyError("per-trade net returns must be finite")
    if r.size < 2:
        return 0.0
    mean, spread = float(r.mean()), float(r.std(ddof=1))
    if spread == 0.0:
        return math.inf if mean > 0 else 0.0
    return mean / (spread / math.sqrt(r.size))


def significant_edge(
    net_returns_per_trade: np.ndarray, min_trades: int = 30, z: float = 2.0
) -> bool:
    """Whether the out-of-sample trades earned significantly more than nothing after costs:
    at least `min_trades` trades and a t-statistic above `z`. False means: do not trade."""
    r = np.asarray(net_returns_per_trade, dtype=np.float64)
    return bool(r.size >= min_trades and edge_t_statistic(r) > z)
