"""Replay the newest candles through the live decision code, on the simulated exchange."""

from __future__ import annotations

from prefect import flow

from flows.run_logs import set_up_logs
from services import bootstrap
from services.decide.loop import DecisionRunReport
from services.outcome import raise_if_failed
from tasks.decide import load_champion, read_trading_state, replay_candles
from tasks.reconcile import reconcile_with_broker
from tasks.reporting import publish_decisions, publish_reconciliation


@flow(name="replay")
def replay(candles: int | None = None) -> DecisionRunReport:
    """Reconcile with the simulated exchange, then replay the newest `candles` candles
    (default: TRADEFLOW_REPLAY_CANDLES) through the live decision code."""
    set_up_logs()
    n = candles or bootstrap.get_settings().replay_candles
    publish_reconciliation(reconcile_with_broker(after_start=True, replay=True))
    report = replay_candles(load_champion(), n)
    outcome = read_trading_state()
    publish_decisions(report, outcome, "Replay")
    raise_if_failed(outcome)
    return report
