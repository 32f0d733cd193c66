from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from core.clock import SystemClock
from infra import composition
from infra.jobs.decisions import DecisionRunReport, run_decisions
from infra.settings import get_settings
from registry.mlflow_registry import ServedModel
from tasks.orders import submit_order
from tasks.retry import only_retryable


@task(name="load-champion", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def load_champion() -> ServedModel:
    return composition.champion_cache(get_settings()).get()


@task(
    name="decide-candles",
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=only_retryable,
    cache_policy=NO_CACHE,
)
def decide_candles(
    model: ServedModel,
    candles: int,
    replay: bool,
    on_candle: Callable[[datetime], None] | None = None,
) -> DecisionRunReport:
    """Decide the newest `candles` candles; a retry skips decisions already recorded."""
    settings = get_settings()
    ledger = composition.ledger(settings)
    broker = composition.broker(settings)
    return run_decisions(
        ledger,
        broker,
        model,
        composition.agents(settings),
        composition.decision_config(settings),
        candles,
        submit=lambda coid: submit_order(ledger, broker, coid),
        clock=None if replay else SystemClock(),
        on_candle=on_candle,
        alerts=composition.alerts(settings),
    )


@task(name="replay-cutoff", cache_policy=NO_CACHE)
def replay_cutoff(candles: int) -> tuple[datetime, datetime]:
    """(first replayed candle, last candle training may see): the model never saw the replay."""
    settings = get_settings()
    ledger = composition.ledger(settings)
    starts = []
    for symbol in settings.symbols:
        frame = ledger.load_candles(
            settings.exchange, symbol, settings.timeframe, limit=candles + 1
        )
        if len(frame) <= candles:
            raise LookupError(f"{symbol}: {len(frame)} candles stored, need more than {candles}")
        starts.append((frame["open_time"].iloc[1], frame["open_time"].iloc[0]))
    first, before = min(starts)
    return first.to_pydatetime(), before.to_pydatetime()
