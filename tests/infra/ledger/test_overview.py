"""The ledger's latency histograms for /metrics (SQLite and PostgreSQL): candle close ->
decided_at of the account's decisions, and the model's recorded seconds per prediction, bucketed
by one SQL query and compared with the same observations bucketed in Python."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from core.candles.timeframe import timeframe_delta
from core.decision import Decision
from core.latency import DECISION_LATENCY_BOUNDS, PREDICT_BOUNDS, LatencyHistogram
from core.orders import decision_id_for
from infra.ledger.ledger import Ledger
from tests.infra.ledger.test_ledger import make_decision

NOW = datetime(2024, 9, 3, tzinfo=UTC)
T = datetime(2024, 9, 1, tzinfo=UTC)


def timed(
    hour: int,
    latency_s: float,
    predict_s: float | None = None,
    *,
    account: str = "paper",
    timeframe: str = "1h",
) -> Decision:
    """A decision made `latency_s` after its candle closed, which recorded `predict_s` as its
    share of the model call (None: a decision from before timings were kept)."""
    t = T + timedelta(hours=hour)
    base = make_decision(t, approved=False)
    timings = {"predict_s": predict_s, "predict_rows": 2, "decide_s": 0.002}
    return replace(
        base,
        decision_id=decision_id_for(account, "BTC/USDT", timeframe, t),
        input=replace(base.input, account=account, timeframe=timeframe),
        decided_at=t + timeframe_delta(timeframe) + timedelta(seconds=latency_s),
        provenance={} if predict_s is None else {"panel": "rules", "timings": timings},
    )


def record(ledger: Ledger, *decisions: Decision) -> None:
    for d in decisions:
        assert ledger.orders.record_decision(d, "paper")


def histograms(ledger: Ledger, account: str = "paper") -> tuple[LatencyHistogram, ...]:
    counts = ledger.overview.trading_counts(NOW, account)
    return counts.decision_latency, counts.predict_seconds


def as_compared(h: LatencyHistogram) -> tuple[object, ...]:
    return (h.bounds, h.cumulative, h.count, pytest.approx(h.total, rel=1e-9))


def test_trading_counts_when_no_decisions_then_empty_histograms(ledger: Ledger) -> None:
    latency, predict = histograms(ledger)
    assert latency == LatencyHistogram.empty(DECISION_LATENCY_BOUNDS)
    assert predict == LatencyHistogram.empty(PREDICT_BOUNDS)


def test_trading_counts_when_decisions_timed_then_bucketed_as_the_observations_are(
    ledger: Ledger,
) -> None:
    # Values on bounds (1 s, 3600 s, 1 ms) fall in their bucket; 20000 s is past the last.
    rows = [(0.5, 0.0004), (1.0, 0.001), (4.25, 0.03), (75.0, None), (3600.0, 3.0),
            (20000.0, None), (0.0, 0.0025)]  # fmt: skip
    record(ledger, *(timed(i, lat, p) for i, (lat, p) in enumerate(rows)))
    record(ledger, timed(0, 2.0, 0.2, account="other"))  # another account's: not counted
    latency, predict = histograms(ledger)
    expected_latency = LatencyHistogram.of(DECISION_LATENCY_BOUNDS, [lat for lat, _ in rows])
    expected_predict = LatencyHistogram.of(PREDICT_BOUNDS, [p for _, p in rows if p is not None])
    assert as_compared(latency) == as_compared(expected_latency)
    assert as_compared(predict) == as_compared(expected_predict)
    assert (latency.cumulative[0], latency.count, predict.cumulative[1], predict.count) == (
        3,
        7,
        2,
        5,
    )


def test_trading_counts_when_timeframes_differ_then_latency_from_each_candles_own_close(
    ledger: Ledger,
) -> None:
    record(ledger, timed(0, 7.5, 0.01, timeframe="5m"), timed(0, 7.5, 0.01, timeframe="1d"),
           timed(0, 7.5, 0.01, timeframe="1w"), timed(0, 7.5, 0.01, timeframe="15m"))  # fmt: skip
    latency, _ = histograms(ledger)
    assert as_compared(latency) == as_compared(
        LatencyHistogram.of(DECISION_LATENCY_BOUNDS, [7.5] * 4)
    )


def test_trading_counts_when_an_account_has_none_then_empty_while_others_have_some(
    ledger: Ledger,
) -> None:
    record(ledger, timed(0, 3.0, 0.01), timed(1, 30.0, 0.02))
    latency, predict = histograms(ledger, "nobody")
    assert (latency.count, predict.count, latency.total) == (0, 0, 0.0)
    assert histograms(ledger)[0].count == 2


def test_trading_counts_when_decisions_added_between_reads_then_each_read_counts_them_all(
    ledger: Ledger,
) -> None:
    """The histograms are kept between reads while no decision is added: one added, older or
    newer than those counted, is in the next read."""
    record(ledger, timed(5, 3.0, 0.01))
    assert histograms(ledger)[0].count == 1
    assert histograms(ledger)[0].count == 1  # nothing new: the same
    record(ledger, timed(1, 40.0, 0.02))  # an older candle, decided late
    latency, predict = histograms(ledger)
    assert as_compared(latency) == as_compared(
        LatencyHistogram.of(DECISION_LATENCY_BOUNDS, [3.0, 40.0])
    )
    assert predict.count == 2
    record(ledger, timed(9, 0.5, None))
    assert [h.count for h in histograms(ledger)] == [3, 2]
