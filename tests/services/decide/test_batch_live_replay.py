"""Preparing a batch, the live loop and the replay, on real candles in a real ledger (SQLite and
PostgreSQL), with a fixed-probability model and fixed agents."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from core.clock import FakeClock
from core.risk.limits import DenialCode
from infra.alerts import Alerts
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from infra.ledger.ledger import Ledger
from services.decide.batch import NoCandles, prepare_batch
from services.decide.live import decide_live
from services.decide.replay import replay
from tests.services.decide.fakes import BUYERS, ROWS, D, FixedModel, config


def close_of_newest(frame: pd.DataFrame, rows: int = ROWS) -> pd.Timestamp:
    return frame["open_time"].iloc[rows - 1] + pd.Timedelta(hours=1)


def test_prepare_batch_when_candles_stored_then_newest_times_with_features_and_probabilities(
    stored: Ledger, btc_1h: pd.DataFrame
) -> None:
    batch = prepare_batch(stored, FixedModel(0.7), config(), 5)
    assert batch.times == list(btc_1h["open_time"].iloc[ROWS - 5 : ROWS])
    t = batch.times[-1]
    features = batch.features_at("BTC/USDT", t)
    assert features is not None
    assert "rsi_14" in features
    assert batch.probability("ETH/USDT", t) == 0.7
    assert batch.prices_at(t)["BTC/USDT"] == D(repr(float(btc_1h["close"].iloc[ROWS - 1])))
    after = prepare_batch(stored, FixedModel(), config(), 5, after=batch.times[2].to_pydatetime())
    assert after.times == batch.times[3:]


def test_prices_at_when_asked_again_or_changed_by_a_caller_then_each_time_its_own_closes(
    stored: Ledger, btc_1h: pd.DataFrame
) -> None:
    batch = prepare_batch(stored, FixedModel(), config(), 5)
    first, last = batch.times[0], batch.times[-1]
    close = {
        t: D(repr(float(btc_1h["close"].iloc[ROWS - 5 + i]))) for i, t in enumerate(batch.times)
    }
    asked = batch.prices_at(last)
    asked["BTC/USDT"] = D(0)  # a caller builds on its answer
    assert batch.prices_at(last)["BTC/USDT"] == close[last]
    assert batch.prices_at(first)["BTC/USDT"] == close[first]
    assert batch.prices_at(last)["BTC/USDT"] == close[last]


def test_prepare_batch_when_a_symbol_has_no_candles_then_no_candles_error(ledger: Ledger) -> None:
    with pytest.raises(NoCandles, match=r"BTC/USDT.*ETH/USDT.*run the ingest flow first"):
        prepare_batch(ledger, FixedModel(), config(), 5)


def test_decide_live_when_paused_then_catches_up_and_only_the_fresh_candle_may_trade(
    stored: Ledger, btc_1h: pd.DataFrame
) -> None:
    cfg = config(max_candle_age=timedelta(hours=1, minutes=5))
    # Ten minutes after the newest close: the one before it closed 1h10 ago, past the limit.
    clock = FakeClock(close_of_newest(btc_1h).to_pydatetime() + timedelta(minutes=10))
    alerts = Alerts()
    report = decide_live(stored, "paper", None, FixedModel(), BUYERS, cfg, clock, alerts)
    assert len(report.candle_times) == cfg.catch_up_candles
    assert report.stale == report.candle_times[:-1]  # all but the newest closed too long ago
    assert len(report.to_send) == 2  # BTC and ETH on the newest candle
    newest = stored.orders.decisions("paper", since=report.candle_times[-1])
    assert all(d.risk_approved for d in newest)
    older = stored.orders.decisions("paper", since=report.candle_times[0])[:-2]
    assert all(d.denials[0].code is DenialCode.STALE_CANDLE for d in older)
    assert "stale candles" in alerts.sent[0][0]

    # A run that died before sending: the next one decides nothing new and sends what is left.
    again = decide_live(stored, "paper", None, FixedModel(), BUYERS, cfg, clock, Alerts())
    assert (again.candle_times, again.to_send) == ([], report.to_send)
    clock.advance(hours=3)  # no new candle for three hours: someone should look at ingestion
    quiet = Alerts()
    decide_live(stored, "paper", None, FixedModel(), BUYERS, cfg, clock, quiet)
    assert [title for title, _ in quiet.sent] == ["tradeflow has no fresh candle"]


def test_replay_when_run_twice_then_orders_fill_at_the_next_open_and_nothing_is_decided_twice(
    stored: Ledger, btc_1h: pd.DataFrame
) -> None:
    exchange = SimulatedBroker(SimulationConfig(slippage_bps=D(0), fee_rate=D(0)))
    first = replay(stored, exchange, FixedModel(), BUYERS, config(), 10, Alerts())
    # The policy enters once per symbol and then holds: it never adds to a position.
    assert (first.decided["BUY"], first.broker) == (2, "paper")
    fills = stored.fills.history("paper")
    assert first.orders >= 2
    assert len(fills) == first.fills
    opens = {
        t.to_pydatetime(): o for t, o in zip(btc_1h["open_time"], btc_1h["open"], strict=False)
    }
    btc = [f for f in fills if f.symbol == "BTC/USDT"]
    assert btc
    assert all(f.price == D(repr(opens[f.filled_at])) for f in btc)  # the next candle's open
    second = replay(stored, exchange, FixedModel(), BUYERS, config(), 10, Alerts())
    assert (second.skipped_existing, second.orders, second.decided.total()) == (20, 0, 0)


def test_submit_when_the_order_is_older_than_the_max_age_then_cancelled_not_sent(
    stored: Ledger, btc_1h: pd.DataFrame
) -> None:
    from core.orders import OrderStatus
    from services.execution import submit_order

    cfg = config(max_candle_age=timedelta(hours=1, minutes=5))
    clock = FakeClock(close_of_newest(btc_1h).to_pydatetime() + timedelta(minutes=10))
    report = decide_live(stored, "paper", None, FixedModel(), BUYERS, cfg, clock, Alerts())
    clock.advance(hours=2)  # the sends were retried, or the run resumed, two hours later
    exchange = SimulatedBroker(SimulationConfig())
    for coid in report.to_send:
        order = submit_order(stored, exchange, coid, clock, max_age=cfg.limits.max_candle_age)
        assert order.status is OrderStatus.CANCELLED
    assert exchange.open_orders() == []
