"""Order-book features: values on ccxt's recorded Binance book, and as-of joins that never use a
snapshot taken after the candle closed."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.features.order_book import BOOK_FEATURE_NAMES, book_features, book_features_at_closes
from core.market.order_book import MarketDataError, OrderBookSnapshot, validate_order_book
from tests.infra.market_data.recorded_binance import recorded_spot_cases

HOUR = timedelta(hours=1)
T0 = datetime(2024, 3, 13, tzinfo=UTC)


def recorded_book(taken_at: datetime = T0) -> OrderBookSnapshot:
    parsed = recorded_spot_cases()["fetchOrderBook"]["parsed"]
    levels = lambda side: tuple((Decimal(str(p)), Decimal(str(a))) for p, a in parsed[side])  # noqa: E731
    return OrderBookSnapshot("binance", "BTC/USDT", taken_at, 1, levels("bids"), levels("asks"))


def book_with_imbalance(taken_at: datetime, bid_qty: str) -> OrderBookSnapshot:
    return OrderBookSnapshot(
        "binance",
        "BTC/USDT",
        taken_at,
        None,
        ((Decimal("100"), Decimal(bid_qty)),),
        ((Decimal("101"), Decimal("1")),),
    )


def test_book_features_when_recorded_binance_book_then_values_follow_their_definitions() -> None:
    f = book_features(recorded_book())
    mid = (42574.3 + 42574.31) / 2
    assert f["book_spread_bps"] == pytest.approx(0.01 / mid * 1e4, rel=1e-9)
    bid, ask = 0.0107 + 0.00646, 0.0087 + 0.00893
    assert f["book_imbalance_top5"] == pytest.approx((bid - ask) / (bid + ask), rel=1e-12)
    bid_n = 42574.3 * 0.0107 + 42574.2 * 0.00646
    ask_n = 42574.31 * 0.0087 + 42574.8 * 0.00893
    assert f["book_depth_ratio_top10"] == pytest.approx(math.log(bid_n / ask_n), rel=1e-12)


def test_book_features_at_closes_when_snapshot_after_close_then_not_used() -> None:
    opens = pd.DatetimeIndex([pd.Timestamp(T0), pd.Timestamp(T0 + HOUR)])
    books = [
        book_with_imbalance(T0 + HOUR, "3"),  # exactly at the first candle's close: usable
        book_with_imbalance(T0 + HOUR + timedelta(seconds=1), "9"),  # after it: only for the 2nd
    ]
    out = book_features_at_closes(books, opens, HOUR, max_age=HOUR)
    assert out["book_imbalance_top5"].tolist() == [pytest.approx(0.5), pytest.approx(0.8)]


def test_book_features_at_closes_when_snapshot_older_than_max_age_then_nan() -> None:
    opens = pd.DatetimeIndex([pd.Timestamp(T0 + 5 * HOUR)])
    out = book_features_at_closes([book_with_imbalance(T0, "3")], opens, HOUR, max_age=HOUR)
    assert out.isna().all().all()
    assert list(out.columns) == list(BOOK_FEATURE_NAMES)


@settings(max_examples=60, deadline=None)
@given(
    offsets=st.lists(st.integers(0, 10 * 3600), min_size=1, max_size=30, unique=True),
    cut=st.integers(0, 9),
)
def test_book_features_at_closes_when_later_snapshots_removed_then_earlier_rows_unchanged(
    offsets: list[int], cut: int
) -> None:
    """No lookahead: snapshots after candle `cut` closed cannot change rows up to `cut`."""
    books = [book_with_imbalance(T0 + timedelta(seconds=s), str(1 + s % 7)) for s in offsets]
    opens = pd.DatetimeIndex([pd.Timestamp(T0 + i * HOUR) for i in range(10)])
    full = book_features_at_closes(books, opens, HOUR, max_age=2 * HOUR)
    close = T0 + (cut + 1) * HOUR
    seen = [b for b in books if b.taken_at <= close]
    truncated = book_features_at_closes(seen, opens[: cut + 1], HOUR, max_age=2 * HOUR)
    pd.testing.assert_frame_equal(full.iloc[: cut + 1], truncated)


def test_validate_order_book_when_asks_not_ascending_then_refused() -> None:
    book = OrderBookSnapshot(
        "binance",
        "BTC/USDT",
        T0,
        None,
        ((Decimal("100"), Decimal("1")),),
        ((Decimal("102"), Decimal("1")), (Decimal("101"), Decimal("1"))),
    )
    with pytest.raises(MarketDataError, match=r"asks strictly ascending.*1 row"):
        validate_order_book(book, "test")


def test_validate_order_book_when_level_numbering_has_holes_then_refused() -> None:
    from core.market.order_book import ORDER_BOOK_SCHEMA, book_rows

    rows = book_rows(recorded_book())
    rows.loc[1, "level"] = 5
    with pytest.raises(Exception, match="levels numbered from 0 without holes"):
        ORDER_BOOK_SCHEMA.validate(rows, lazy=True)
