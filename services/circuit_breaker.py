"""Runs the circuit breaker on the ledger's numbers: trips it (HALTED for the cooldown, persisted,
alerted), and clears it when the cooldown is over. Its memory is only a cache of the equity curve
that the ledger's fills define; every new fill is read once, not every fill every candle.

A trip answers for what came before it. Once the breaker is cleared (its cooldown over, or reset
early by an operator), its trade thresholds count only the trades closed from that moment on and
its drawdown is measured from the highest equity since then, starting from the equity at that
moment valued at the market (a position that fell while it halted does not trip it again).
Judged on the same trades, the losing streak that tripped it would trip it again at once: a
halt holds exits too, so no trade could ever close to end the streak, and neither the cooldown
nor a reset would end the halt. (freqtrade's protections likewise count only the trades of
their lookback window.)"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal

from core.alerts import Severity
from core.portfolio import EquityCurve
from core.ports import Notifier, TradingLedger
from core.risk.breaker import (
    BreakerConfig,
    BreakerInputs,
    BreakerReading,
    TradeResult,
    TradeStats,
    read,
    trade_stats,
    trips,
)
from core.risk.limits import RiskState
from core.risk.state import Control
from services.risk_snapshot import RiskSnapshots


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    tripped: bool
    reasons: tuple[str, ...]
    until: datetime | None
    reading: BreakerReading | None
    changed: bool = False  # tripped or cleared by this check: the trading state moved


class PeakEquity:
    """The highest equity the fills up to `now` reached. Reads only the fills after the newest
    one it has folded in; starts over when a fill arrived for a time it has already passed
    (reconciliation adopted a late one), when asked about an earlier moment, or from another
    moment.

    Since a moment, when asked: the highest of the equity at that moment (`equity_at`, a risk
    snapshot's: valued at the market then, so a position that fell before it does not count as
    a drawdown after it) and the equity after each fill from that moment on."""

    def __init__(
        self,
        ledger: TradingLedger,
        account: str,
        equity_at: Callable[[datetime], Decimal],
        starting_cash: Callable[[], Decimal] | None = None,
    ) -> None:
        self.ledger, self.account, self._equity_at = ledger, account, equity_at
        # Where the starting cash is read from (a risk snapshot's, read once), else the ledger.
        self._starting_cash = starting_cash or (lambda: ledger.accounts.starting_cash(account))
        self._curve: EquityCurve | None = None
        self._newest: datetime | None = None  # filled_at of the newest fill folded in
        self._folded = 0
        self._since: datetime | None = None  # the moment `_since_peak` counts from
        self._since_peak = Decimal(0)

    def at(self, now: datetime, since: datetime | None = None) -> Decimal:
        fills = self.ledger.fills
        if self._curve is None or since != self._since or not self._still_valid(now):
            self._curve = EquityCurve.starting(self._starting_cash())
            self._newest, self._folded = None, 0
            self._since = since
            self._since_peak = self._equity_at(since) if since is not None else self._curve.cash
        for fill in fills.history(self.account, after=self._newest, until=now):
            value = self._curve.add(fill)
            self._newest, self._folded = fill.filled_at, self._folded + 1
            if since is not None and fill.filled_at >= since:  # one at the moment came after it
                self._since_peak = max(self._since_peak, value)
        return self._curve.peak if since is None else self._since_peak

    def _still_valid(self, now: datetime) -> bool:
        if self._newest is None:
            return self._folded == 0
        if now < self._newest:
            return False
        return self.ledger.fills.count(self.account, until=self._newest) == self._folded


class CircuitBreaker:
    def __init__(
        self,
        ledger: TradingLedger,
        snapshots: RiskSnapshots,
        config: BreakerConfig,
        alerts: Notifier,
    ) -> None:
        self.ledger, self.snapshots, self.config, self.alerts = ledger, snapshots, config, alerts
        self.peak = PeakEquity(
            ledger, snapshots.account, snapshots.equity_at, snapshots.starting_cash
        )
        # The last trades read and their stats: a backtest reads the same window at every
        # candle until a trade closes.
        self._trades: Sequence[TradeResult] = ()
        self._stats: TradeStats | None = None

    def check(
        self, prices: Mapping[str, Decimal], now: datetime, state: RiskState | None = None
    ) -> BreakerStatus:
        """`state`: the risk snapshot at `now` when the caller has taken it already."""
        cleared = False
        control = self.ledger.safety.control(Control.CIRCUIT_BREAKER)
        if control is not None and control.active:
            if control.until is None or now < control.until:
                return BreakerStatus(True, (control.reason or "",), control.until, None)
            self.ledger.safety.set_control(
                Control.CIRCUIT_BREAKER, False, "cooldown over", now, event="cooldown_over"
            )
            self.alerts.send(
                "tradeflow circuit breaker cleared",
                f"cooldown over at {now:%F %T} UTC",
                severity=Severity.INFO,
            )
            cleared, state = True, None  # the snapshot saw the breaker on
        # What an earlier trip answered for is not judged again (the module says why).
        since = now if cleared else (control.changed_at if control is not None else None)
        inputs = self._inputs(prices, now, state, since)
        reading = read(inputs, self.config, self._stats_of(inputs.trades))
        crossed = trips(reading, self.config)
        if not crossed:
            return BreakerStatus(False, (), None, reading, changed=cleared)
        until = now + self.config.cooldown
        reason = "; ".join(crossed)
        self.ledger.safety.set_control(
            Control.CIRCUIT_BREAKER,
            True,
            reason,
            now,
            until=until,
            event="tripped",
            detail={"reading": {k: _plain(v) for k, v in asdict(reading).items()}},
        )
        self.alerts.send(
            "tradeflow circuit breaker TRIPPED",
            f"{reason}; trading halted until {until:%F %T} UTC",
            severity=Severity.CRITICAL,
        )
        return BreakerStatus(True, tuple(crossed), until, reading, changed=True)

    def _stats_of(self, trades: Sequence[TradeResult]) -> TradeStats:
        """Kept while the window holds the very same trades (the objects are kept too, so an
        identity cannot be reused); a ledger that reads them afresh computes them again."""
        same = len(trades) == len(self._trades) and all(
            a is b for a, b in zip(trades, self._trades, strict=True)
        )
        if not same or self._stats is None:
            self._trades, self._stats = trades, trade_stats(trades, self.config)
        return self._stats

    def _inputs(
        self,
        prices: Mapping[str, Decimal],
        now: datetime,
        state: RiskState | None,
        since: datetime | None,
    ) -> BreakerInputs:
        """`since`: when the breaker was last cleared (None: never tripped)."""
        if state is None:
            state = self.snapshots.snapshot(prices, now)  # equity now and at 00:00 UTC
        window = max(
            self.config.win_rate_window,
            self.config.sharpe_window,
            self.config.max_consecutive_losses,
        )
        trades = self.ledger.fills.closed_trades(self.snapshots.account, until=now, limit=window)
        # A trade closed at the clearing's very moment came after it: an order decided at a
        # candle's close fills at the next candle's open, which is that moment.
        if since is not None and trades and trades[0].closed_at < since:
            trades = [t for t in trades if t.closed_at >= since]
        return BreakerInputs(
            trades=trades,
            equity_now=state.equity,
            day_start_equity=state.day_start_equity,
            peak_equity=max(self.peak.at(now, since), state.equity),
        )


def _plain(value: object) -> object:
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return str(value)
    return value
