"""Decision tasks: load the champion, decide live (orders come back to be sent as tasks), or
replay a window on the simulated exchange."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from core.clock import SystemClock
from core.ports import Model
from services import bootstrap
from services.decide.live import LiveReport, decide_live
from services.decide.loop import DecisionRunReport
from services.decide.replay import replay, replay_window
from services.outcome import TradingOutcome, trading_outcome
from tasks.retry import only_retryable


@task(name="load-champion", retry_condition_fn=only_retryable, retries=2, retry_delay_seconds=2,
      cache_policy=NO_CACHE)  # fmt: skip
def load_champion() -> Model:
    return bootstrap.champion(bootstrap.get_settings()).get()


@task(
    name="decide-candles",
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=only_retryable,
    cache_policy=NO_CACHE,
)
def decide_new_candles(model: Model) -> LiveReport:
    """Every closed candle since the last decided one; a retry skips what was recorded."""
    settings = bootstrap.get_settings()
    broker = bootstrap.broker(settings)
    with bootstrap.agent_panel(settings) as panel:
        return decide_live(
            bootstrap.ledger(settings),
            broker.name,
            bootstrap.paper_market(broker),
            model,
            panel,
            bootstrap.decision_config(settings),
            SystemClock(),
            bootstrap.alerts(settings),
        )


@task(name="replay-candles", retry_condition_fn=only_retryable, retries=1, retry_delay_seconds=2,
      cache_policy=NO_CACHE)  # fmt: skip
def replay_candles(model: Model, candles: int) -> DecisionRunReport:
    """The newest `candles` candles on the simulated exchange; a retry skips what was recorded."""
    settings = bootstrap.get_settings()
    with bootstrap.agent_panel(settings) as panel:
        return replay(
            bootstrap.ledger(settings),
            bootstrap.replay_exchange(settings),
            model,
            panel,
            bootstrap.decision_config(settings),
            candles,
            bootstrap.alerts(settings),
        )


@task(name="replay-cutoff", cache_policy=NO_CACHE)
def replay_cutoff(candles: int) -> tuple[datetime, datetime]:
    """(first replayed candle, last candle training may see): the model never saw the replay."""
    settings = bootstrap.get_settings()
    return replay_window(bootstrap.ledger(settings), bootstrap.decision_config(settings), candles)


@task(name="trading-state", retry_condition_fn=only_retryable, retries=2, retry_delay_seconds=2,
      cache_policy=NO_CACHE)  # fmt: skip
def read_trading_state() -> TradingOutcome:
    settings = bootstrap.get_settings()
    return trading_outcome(bootstrap.ledger(settings), SystemClock().now())
