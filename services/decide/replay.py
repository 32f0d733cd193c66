"""Replay: the decision step over a window of history, on the simulated exchange only.

For each candle time, oldest first: working orders fill at this candle's open (the first price
after the earlier decision), the breaker looks at the account, then every symbol is decided at
this candle's close and approved orders are sent. Plain function calls: no task inside a task.
"""

from __future__ import annotations

from datetime import datetime

from core.agents.brief import REGIME_FEATURES
from core.agents.panel import Panel
from core.candles.timeframe import timeframe_delta
from core.clock import FixedClock
from core.errors import FatalError
from core.holds import candle_only
from core.ports import Model, Notifier, SimulatedExchange, TradingLedger
from services import progress
from services.decide.batch import prepare_batch
from services.decide.config import DecisionConfig
from services.decide.loop import DecisionLoop, DecisionRunReport, settle_all
from services.execution import submit_order, unsent_orders


def replay(
    ledger: TradingLedger,
    exchange: SimulatedExchange,
    model: Model,
    panel: Panel,
    cfg: DecisionConfig,
    candles: int,
    alerts: Notifier,
) -> DecisionRunReport:
    """Decide the newest `candles` closed candles as if each had just closed."""
    # Only the features the panel reads are kept through the run (an LLM panel's brief may
    # cite any of them; the rule agents read five): most of a long backtest's memory.
    reads = getattr(panel, "features_read", None)
    keep = None if reads is None else reads | set(REGIME_FEATURES)
    batch = prepare_batch(ledger, model, cfg, candles, keep=keep)
    # Holds are decided apart, in bulk, where no decision keeps its provenance (a backtest's):
    # provenance records the risk state each decision saw, which a hold never reads.
    apart = candle_only(panel) and not cfg.record_provenance
    loop = DecisionLoop(ledger, panel, cfg, alerts, holds_apart=apart)
    step = timeframe_delta(cfg.timeframe)
    report = DecisionRunReport(broker=exchange.name)
    for coid in unsent_orders(ledger, cfg.account):  # an earlier attempt recorded, not sent
        submit_order(ledger, exchange, coid, FixedClock(batch.times[0].to_pydatetime()))
    already = loop.already_decided(batch)
    for t in batch.times:
        opened = t.to_pydatetime()
        report.fills += settle_all(ledger, exchange, batch, t, cfg)
        now = opened + step  # the candle just closed
        decisions, skipped = loop.decide(batch, t, now, exchange.name, already)
        report.skipped_existing += skipped
        for decision in decisions:
            report.count(decision)
            if decision.order is not None:
                submit_order(ledger, exchange, decision.order.client_order_id, FixedClock(now))
                report.orders += 1
        report.candle_times.append(opened)
        progress.candle(opened)
    loop.record_holds(batch, exchange.name)
    report.decided.update(ledger.orders.hold_actions())
    return report


class NotEnoughCandles(FatalError, LookupError):
    pass


def replay_window(
    ledger: TradingLedger, cfg: DecisionConfig, candles: int
) -> tuple[datetime, datetime]:
    """(first replayed candle, last candle training may see): the model never saw the replay."""
    starts = []
    for symbol in cfg.symbols:
        frame = ledger.candles.load(cfg.exchange, symbol, cfg.timeframe, limit=candles + 1)
        if len(frame) <= candles:
            raise NotEnoughCandles(
                f"{symbol}: {len(frame)} candles stored, a replay of {candles} needs more"
            )
        starts.append((frame["open_time"].iloc[1], frame["open_time"].iloc[0]))
    first, before = min(starts)
    return first.to_pydatetime(), before.to_pydatetime()
