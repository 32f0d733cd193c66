"""The circuit breaker on ledger numbers: trips on losing trades, halts through the cooldown
(persisted: a fresh process sees it), alerts, clears itself when the cooldown ends."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from core.candles.bar import Bar
from core.clock import FakeClock
from core.risk.breaker import BreakerConfig
from core.risk.state import Control, HaltCause, TradingState, effective_state
from core.types import Side, Symbol
from infra.alerts import Alerts
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from infra.ledger.ledger import Ledger
from services.circuit_breaker import BreakerStatus, CircuitBreaker, PeakEquity
from services.execution import settle_simulated, submit_order
from services.risk_snapshot import RiskSnapshots
from tests.services.open_book import ACCOUNT, T0, record_order

BTC = Symbol("BTC/USDT")
CFG = BreakerConfig(max_consecutive_losses=3, cooldown=timedelta(hours=24))


def check_circuit_breaker(  # type: ignore[no-untyped-def]
    ledger: Ledger, snapshots: RiskSnapshots, prices, now, config: BreakerConfig, alerts: Alerts
) -> BreakerStatus:
    return CircuitBreaker(ledger, snapshots, config, alerts).check(prices, now)


def no_cost_broker() -> SimulatedBroker:
    return SimulatedBroker(SimulationConfig(slippage_bps=Decimal(0), fee_rate=Decimal(0)))


def trade(ledger: Ledger, broker: SimulatedBroker, hour: int, side: Side, price: str) -> None:
    """1 BTC ordered for the candle at T0 + `hour` h and filled at `price` the hour after,
    through the real submit and settle path."""
    coid = record_order(ledger, "BTC/USDT", hour, side=side)
    clock = FakeClock(T0)
    submit_order(ledger, broker, coid, clock)
    t, p = T0 + timedelta(hours=hour + 1), Decimal(price)
    settle_simulated(ledger, broker, ACCOUNT, BTC, Bar(t, p, p, p, p, Decimal(1000)), clock)


def round_trip(ledger: Ledger, broker: SimulatedBroker, n: int, buy: str, sell: str) -> None:
    """Buy 1 at `buy` (filled at hour 10n + 1), sell it at `sell` (hour 10n + 2)."""
    trade(ledger, broker, 10 * n, Side.BUY, buy)
    trade(ledger, broker, 10 * n + 1, Side.SELL, sell)


def setup(ledger: Ledger, losses: int) -> RiskSnapshots:
    broker = no_cost_broker()
    ledger.accounts.ensure(ACCOUNT, Decimal(10000), T0)
    for n in range(losses):
        round_trip(ledger, broker, n, "100", "99")
    return RiskSnapshots(ledger, ACCOUNT, "binance", "1h")


def test_breaker_when_three_losing_trades_then_tripped_halted_alerted_and_persisted(
    ledger: Ledger,
) -> None:
    snapshots = setup(ledger, losses=3)
    now = T0 + timedelta(days=2)
    alerts = Alerts()

    status = check_circuit_breaker(ledger, snapshots, {BTC: Decimal(99)}, now, CFG, alerts)

    assert status.tripped
    assert status.reasons == ("CONSECUTIVE_LOSSES: 3 in a row, limit 3",)
    assert status.until == now + timedelta(hours=24)
    state, cause, _ = effective_state(ledger.safety.flags(now))
    assert (state, cause) == (TradingState.HALTED, HaltCause.CIRCUIT_BREAKER)
    assert "TRIPPED" in alerts.sent[0][0]
    [event] = ledger.safety.events(Control.CIRCUIT_BREAKER)
    assert event.step == "tripped"
    assert event.detail["reading"]["consecutive_losses"] == 3
    # Still halted an hour later, from the ledger alone (a restarted process).
    later = now + timedelta(hours=1)
    again = check_circuit_breaker(ledger, snapshots, {BTC: Decimal(99)}, later, CFG, Alerts())
    assert again.tripped
    assert len(ledger.safety.events(Control.CIRCUIT_BREAKER)) == 1


def test_breaker_when_cooldown_over_then_cleared_and_the_same_streak_does_not_trip_it_again(
    ledger: Ledger,
) -> None:
    snapshots = setup(ledger, losses=3)
    now = T0 + timedelta(days=2)
    check_circuit_breaker(ledger, snapshots, {}, now, CFG, Alerts())
    after = now + timedelta(hours=24)
    # The trip answered for those three losses: the streak counts from the clearing on, or
    # the halt (which holds exits too) could never end.
    status = check_circuit_breaker(ledger, snapshots, {}, after, CFG, Alerts())
    steps = [e.step for e in ledger.safety.events(Control.CIRCUIT_BREAKER)]
    assert steps == ["tripped", "cooldown_over"]
    assert not status.tripped
    assert status.changed
    assert status.reading is not None
    assert status.reading.consecutive_losses == 0
    later = after + timedelta(hours=1)  # a fresh process, from the ledger alone
    assert not check_circuit_breaker(ledger, snapshots, {}, later, CFG, Alerts()).tripped
    assert effective_state(ledger.safety.flags(later))[0] is TradingState.ACTIVE


def test_breaker_when_new_losses_follow_a_clearing_then_only_they_count_and_trip_it_again(
    ledger: Ledger,
) -> None:
    snapshots = setup(ledger, losses=3)
    broker = no_cost_broker()
    tripped = T0 + timedelta(days=2)
    check_circuit_breaker(ledger, snapshots, {}, tripped, CFG, Alerts())
    cleared = tripped + timedelta(hours=24)
    check_circuit_breaker(ledger, snapshots, {}, cleared, CFG, Alerts())
    for n in (8, 9):  # two losses after the clearing (hours 81-92): five in a row in all
        round_trip(ledger, broker, n, "100", "99")
    two = check_circuit_breaker(ledger, snapshots, {}, T0 + timedelta(hours=95), CFG, Alerts())
    assert not two.tripped
    assert two.reading is not None
    assert two.reading.consecutive_losses == 2
    round_trip(ledger, broker, 10, "100", "99")
    three = check_circuit_breaker(ledger, snapshots, {}, T0 + timedelta(hours=105), CFG, Alerts())
    assert three.tripped
    assert three.reasons == ("CONSECUTIVE_LOSSES: 3 in a row, limit 3",)


def test_breaker_when_reset_early_by_the_operator_then_the_streak_before_it_is_not_counted(
    ledger: Ledger,
) -> None:
    snapshots = setup(ledger, losses=3)
    now = T0 + timedelta(days=2)
    check_circuit_breaker(ledger, snapshots, {}, now, CFG, Alerts())
    reset = now + timedelta(hours=2)  # well within the cooldown
    ledger.safety.set_control(Control.CIRCUIT_BREAKER, False, "operator reset", reset)
    status = check_circuit_breaker(
        ledger, snapshots, {}, reset + timedelta(minutes=5), CFG, Alerts()
    )
    assert not status.tripped
    assert status.reading is not None
    assert status.reading.consecutive_losses == 0


def test_breaker_when_cleared_below_the_old_peak_then_the_drawdown_counts_from_the_clearing(
    ledger: Ledger,
) -> None:
    broker = no_cost_broker()
    ledger.accounts.ensure(ACCOUNT, Decimal(1000), T0)
    round_trip(ledger, broker, 0, "100", "800")  # equity 1,700: the peak
    round_trip(ledger, broker, 1, "800", "200")  # equity 1,100: 35 % below it
    snapshots = RiskSnapshots(ledger, ACCOUNT, "binance", "1h")
    config = BreakerConfig(max_drawdown_pct=Decimal("0.15"), cooldown=timedelta(hours=24))
    now = T0 + timedelta(days=2)
    first = check_circuit_breaker(ledger, snapshots, {}, now, config, Alerts())
    assert first.tripped
    assert first.reasons[0].startswith("MAX_DRAWDOWN: 35.29%")
    after = check_circuit_breaker(
        ledger, snapshots, {}, now + timedelta(hours=24), config, Alerts()
    )
    assert not after.tripped
    assert after.reading is not None
    assert after.reading.drawdown_pct == 0.0
    round_trip(ledger, broker, 8, "100", "50")  # equity 1,050: 4.5 % below 1,100
    later = check_circuit_breaker(ledger, snapshots, {}, T0 + timedelta(hours=90), config, Alerts())
    assert not later.tripped
    assert later.reading is not None
    assert later.reading.drawdown_pct == pytest.approx(50 / 1100)


def test_breaker_when_trades_mixed_then_not_tripped(ledger: Ledger) -> None:
    broker = no_cost_broker()
    ledger.accounts.ensure(ACCOUNT, Decimal(10000), T0)
    for n, (buy, sell) in enumerate([("100", "99"), ("100", "99"), ("100", "103")]):
        round_trip(ledger, broker, n, buy, sell)
    snapshots = RiskSnapshots(ledger, ACCOUNT, "binance", "1h")
    status = check_circuit_breaker(ledger, snapshots, {}, T0 + timedelta(days=2), CFG, Alerts())
    assert not status.tripped
    assert status.reading is not None
    assert status.reading.consecutive_losses == 0


def test_breaker_when_no_trades_yet_then_reads_flat_and_does_not_trip(ledger: Ledger) -> None:
    ledger.accounts.ensure(ACCOUNT, Decimal(10000), T0)
    snapshots = RiskSnapshots(ledger, ACCOUNT, "binance", "1h")
    status = check_circuit_breaker(ledger, snapshots, {}, T0 + timedelta(hours=1), CFG, Alerts())
    assert not status.tripped
    assert status.reading is not None
    assert (status.reading.drawdown_pct, status.reading.daily_loss_pct) == (0.0, 0.0)


def test_peak_equity_when_fills_arrive_over_time_then_equals_the_full_curve_each_time(
    ledger: Ledger,
) -> None:
    from core.portfolio import equity_path

    broker = no_cost_broker()
    ledger.accounts.ensure(ACCOUNT, Decimal(10000), T0)
    peak = PeakEquity(ledger, ACCOUNT, RiskSnapshots(ledger, ACCOUNT, "binance", "1h").equity_at)
    seen = []
    for n, (buy, sell) in enumerate([("100", "120"), ("100", "90"), ("100", "130")]):
        round_trip(ledger, broker, n, buy, sell)
        now = T0 + timedelta(hours=10 * n + 3)
        fills = ledger.fills.history(ACCOUNT, until=now)
        expected = max([Decimal(10000), *equity_path(Decimal(10000), fills)])
        seen.append(peak.at(now))
        assert seen[-1] == expected
    assert seen == [Decimal(10020), Decimal(10020), Decimal(10040)]
    # Asked about an earlier moment it starts over and still agrees with the full curve.
    early = T0 + timedelta(hours=3)
    assert peak.at(early) == Decimal(10020)


def test_check_when_a_trade_closes_between_checks_on_a_memory_ledger_then_it_counts() -> None:
    # The memory ledger hands back the same trade objects each time: the breaker keeps their
    # stats until the window changes, and must see the third loss at once.
    from infra.ledger.memory import MemoryLedger

    ledger = MemoryLedger()
    snapshots = setup(ledger, losses=2)  # type: ignore[arg-type]
    broker = no_cost_broker()
    breaker = CircuitBreaker(ledger, snapshots, CFG, Alerts())
    now = T0 + timedelta(days=2)
    for hour in range(3):  # the same window, read again
        status = breaker.check({BTC: Decimal(99)}, now + timedelta(hours=hour))
        assert not status.tripped
        assert status.reading is not None
        assert status.reading.consecutive_losses == 2
    round_trip(ledger, broker, 2, "100", "99")  # type: ignore[arg-type]
    status = breaker.check({BTC: Decimal(99)}, now + timedelta(hours=3))
    assert status.tripped
    assert status.reasons == ("CONSECUTIVE_LOSSES: 3 in a row, limit 3",)


def test_peak_equity_when_asked_since_a_moment_then_counts_from_the_equity_at_that_moment(
    ledger: Ledger,
) -> None:
    broker = no_cost_broker()
    ledger.accounts.ensure(ACCOUNT, Decimal(10000), T0)
    for n, (buy, sell) in enumerate([("100", "130"), ("100", "90"), ("100", "105")]):
        round_trip(ledger, broker, n, buy, sell)  # equity 10,030, 10,020, 10,025
    peak = PeakEquity(ledger, ACCOUNT, RiskSnapshots(ledger, ACCOUNT, "binance", "1h").equity_at)
    end = T0 + timedelta(days=2)
    assert peak.at(end) == Decimal(10030)
    assert peak.at(end, since=T0 + timedelta(hours=13)) == Decimal(10025)  # from 10,020 on
    assert peak.at(end, since=T0) == Decimal(10030)
    assert peak.at(end, since=end) == Decimal(10025)  # no fill after: the equity then


def _hourly(closes: list[float]) -> pd.DataFrame:
    """1h candles from T0, each opening and closing at its close (synthetic: an edge case)."""
    times = pd.date_range(T0, periods=len(closes), freq="1h", tz="UTC")
    prices = np.array(closes, dtype="float64")
    return pd.DataFrame(
        {"open_time": times, "open": prices, "high": prices, "low": prices, "close": prices,
         "volume": np.full(len(closes), 1000.0)}
    )  # fmt: skip


def test_breaker_when_a_held_position_fell_before_the_clearing_then_only_a_fall_after_it_trips(
    ledger: Ledger,
) -> None:
    # Bought at 100 with 200 of cash; the price falls to 10 and stays: a 45 % drawdown that no
    # sell can realise while the breaker halts. Measured from the fills' prices, the clearing's
    # equity would be 200 and the breaker would trip again at every cooldown's end.
    ledger.candles.upsert("binance", "BTC/USDT", "1h", _hourly([100.0] * 10 + [10.0] * 190))
    ledger.accounts.ensure(ACCOUNT, Decimal(200), T0)
    trade(ledger, no_cost_broker(), 0, Side.BUY, "100")
    snapshots = RiskSnapshots(ledger, ACCOUNT, "binance", "1h")
    config = BreakerConfig(
        max_daily_loss_pct=Decimal("0.9"),  # the drawdown alone
        max_drawdown_pct=Decimal("0.05"),
        cooldown=timedelta(hours=24),
    )
    breaker = CircuitBreaker(ledger, snapshots, config, Alerts())
    now = T0 + timedelta(days=2)
    first = breaker.check({BTC: Decimal(10)}, now)
    assert first.tripped
    assert first.reasons == ("MAX_DRAWDOWN: 45.00% below the peak, limit 5.00%",)
    cleared_at = now + timedelta(hours=24)
    cleared = breaker.check({BTC: Decimal(10)}, cleared_at)
    assert not cleared.tripped
    assert cleared.reading is not None
    assert cleared.reading.drawdown_pct == 0.0
    fresh = CircuitBreaker(ledger, snapshots, config, Alerts())  # a restarted process
    assert not fresh.check({BTC: Decimal(10)}, cleared_at + timedelta(hours=1)).tripped
    fell = fresh.check({BTC: Decimal(4)}, cleared_at + timedelta(hours=2))  # 110 -> 104
    assert fell.tripped
    assert fell.reasons == ("MAX_DRAWDOWN: 5.45% below the peak, limit 5.00%",)


def test_breaker_when_a_trade_closes_at_the_clearing_moment_then_it_counts(
    ledger: Ledger,
) -> None:
    # A backtest's exit decided at the clearing candle's close fills at the next candle's open:
    # the very moment of the clearing. It is the first trade after the trip.
    snapshots = setup(ledger, losses=3)
    broker = no_cost_broker()
    check_circuit_breaker(ledger, snapshots, {}, T0 + timedelta(hours=48), CFG, Alerts())
    cleared_at = T0 + timedelta(hours=72)
    check_circuit_breaker(ledger, snapshots, {}, cleared_at, CFG, Alerts())
    round_trip(ledger, broker, 7, "100", "99")  # its sell fills at hour 72: the clearing's
    status = check_circuit_breaker(
        ledger, snapshots, {}, cleared_at + timedelta(hours=1), CFG, Alerts()
    )
    assert status.reading is not None
    assert status.reading.consecutive_losses == 1
