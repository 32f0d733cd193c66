"""Runs the circuit breaker on the ledger's numbers: trips it (HALTED for the cooldown, persisted,
alerted), and clears it when the cooldown is over. Nothing here is kept in memory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal

from core.portfolio import cash_after, replay_fills
from core.risk.breaker import BreakerConfig, BreakerInputs, BreakerReading, read, trips
from core.types import Symbol
from infra.alerts import Alerts
from infra.jobs.risk_snapshot import RiskSnapshots
from infra.ledger.repository import CIRCUIT_BREAKER, Ledger

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    tripped: bool
    reasons: tuple[str, ...]
    until: datetime | None
    reading: BreakerReading | None


def check_circuit_breaker(
    ledger: Ledger,
    snapshots: RiskSnapshots,
    prices: Mapping[str, Decimal],
    now: datetime,
    config: BreakerConfig,
    alerts: Alerts,
) -> BreakerStatus:
    row = ledger.control(CIRCUIT_BREAKER)
    if row is not None and row.active:
        if row.until is not None and now >= row.until:
            ledger.set_control(CIRCUIT_BREAKER, False, "cooldown over", now, event="cooldown_over")
            alerts.send("tradeflow circuit breaker cleared", f"cooldown over at {now:%F %T} UTC")
        else:
            return BreakerStatus(True, (row.reason or "",), row.until, None)
    reading = read(_inputs(ledger, snapshots, prices, now), config)
    crossed = trips(reading, config)
    if not crossed:
        return BreakerStatus(False, (), None, reading)
    until = now + config.cooldown
    reason = "; ".join(crossed)
    ledger.set_control(
        CIRCUIT_BREAKER,
        True,
        reason,
        now,
        until=until,
        event="tripped",
        detail={"reading": {k: _plain(v) for k, v in asdict(reading).items()}},
    )
    alerts.send(
        "tradeflow circuit breaker TRIPPED", f"{reason}; trading halted until {until:%F %T} UTC"
    )
    return BreakerStatus(True, tuple(crossed), until, reading)


def _inputs(
    ledger: Ledger, snapshots: RiskSnapshots, prices: Mapping[str, Decimal], now: datetime
) -> BreakerInputs:
    account = snapshots.account
    fills = [f for f in ledger.fills(account) if f.filled_at <= now]
    cash = ledger.starting_cash(account)
    peak = cash
    last_price: dict[Symbol, Decimal] = {}
    held: dict[Symbol, Decimal] = {}
    for fill in fills:  # the equity after each fill, valued at the latest fill prices
        cash = cash_after(cash, fill)
        last_price[fill.symbol] = fill.price
        sign = 1 if fill.side.value == "buy" else -1
        held[fill.symbol] = held.get(fill.symbol, ZERO) + sign * fill.quantity
        peak = max(peak, cash + sum((q * last_price[s] for s, q in held.items()), ZERO))
    positions = replay_fills(fills)
    equity_now = cash + sum(
        (
            p.quantity * Decimal(prices.get(s, last_price.get(s, p.avg_price)))
            for s, p in positions.items()
        ),
        ZERO,
    )
    return BreakerInputs(
        trades=ledger.closed_trades(account, until=now),
        equity_now=equity_now,
        day_start_equity=snapshots.day_start_equity(now),
        peak_equity=max(peak, equity_now),
    )


def _plain(value: object) -> object:
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return str(value)
    return value
