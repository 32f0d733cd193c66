"""Runs the circuit breaker on the ledger's numbers: trips it (HALTED for the cooldown, persisted,
alerted), and clears it when the cooldown is over. Nothing here is kept in memory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal

from core.portfolio import equity_path
from core.risk.breaker import BreakerConfig, BreakerInputs, BreakerReading, read, trips
from infra.alerts import Alerts
from infra.jobs.risk_snapshot import RiskSnapshots
from infra.ledger.repository import CIRCUIT_BREAKER, Ledger


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
    state = snapshots.snapshot(prices, now)  # equity now and at 00:00 UTC, from the ledger
    fills = [f for f in ledger.fills(account) if f.filled_at <= now]
    start = ledger.starting_cash(account)
    peak = max([start, *equity_path(start, fills)])
    return BreakerInputs(
        trades=ledger.closed_trades(account, until=now),
        equity_now=state.equity,
        day_start_equity=state.day_start_equity,
        peak_equity=max(peak, state.equity),
    )


def _plain(value: object) -> object:
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return str(value)
    return value
