"""Live decisions: reconcile, then decide every closed candle since the last decided one, then
send each approved order as its own task. A run that leaves trading halted by something that
went wrong (failed reconciliation, tripped breaker) fails, naming the cause."""

from __future__ import annotations

from prefect import flow

from flows.run_logs import set_up_logs
from services.decide.live import LiveReport
from services.execution import OrdersNotSent
from services.outcome import raise_if_failed
from tasks.decide import decide_new_candles, load_champion, read_trading_state
from tasks.orders import send_all
from tasks.reconcile import reconcile_with_broker
from tasks.reporting import publish_decisions, publish_reconciliation


@flow(name="decide")
def decide() -> LiveReport:
    set_up_logs()
    publish_reconciliation(reconcile_with_broker(after_start=True))
    model = load_champion()
    report = decide_new_candles(model)
    failed = send_all(report.to_send)
    outcome = read_trading_state()
    publish_decisions(report, outcome, "Live decisions")
    raise_if_failed(outcome)
    if failed:
        raise OrdersNotSent(f"{len(failed)} of {len(report.to_send)} orders not sent: {failed}")
    return report
