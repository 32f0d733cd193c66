"""Microstructure features from order-book snapshots, when the source is live and has stored some.

History from files has no books, so these are not part of the model's candle feature set (and
not of its version hash): they join a decision's recorded inputs and the agents' context when
a snapshot taken at or before the candle's close, and no older than `max_age`, exists. A snapshot
taken after the close is never used for that candle.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import numpy as np
import pandas as pd

from core.features.book_specs import BOOK_DEPTH, BOOK_FEATURE_NAMES
from core.market.order_book import OrderBookSnapshot


def book_features(snapshot: OrderBookSnapshot) -> dict[str, float]:
    bids = np.array([(float(p), float(a)) for p, a in snapshot.bids], dtype=np.float64)
    asks = np.array([(float(p), float(a)) for p, a in snapshot.asks], dtype=np.float64)
    mid = (bids[0, 0] + asks[0, 0]) / 2
    bid5, ask5 = bids[:5, 1].sum(), asks[:5, 1].sum()
    bid_notional = float((bids[:BOOK_DEPTH, 0] * bids[:BOOK_DEPTH, 1]).sum())
    ask_notional = float((asks[:BOOK_DEPTH, 0] * asks[:BOOK_DEPTH, 1]).sum())
    return {
        "book_spread_bps": float((asks[0, 0] - bids[0, 0]) / mid * 1e4),
        "book_imbalance_top5": float((bid5 - ask5) / (bid5 + ask5)),
        "book_depth_ratio_top10": float(np.log(bid_notional / ask_notional)),
    }


def book_features_at_closes(
    snapshots: Sequence[OrderBookSnapshot],
    candle_opens: pd.DatetimeIndex,  # type: ignore[type-arg]
    timeframe: timedelta,
    max_age: timedelta,
) -> pd.DataFrame:
    """One row per candle: the features of the newest snapshot taken at or before its close
    (open + timeframe) and not older than max_age; NaN where there is none."""
    empty = pd.DataFrame(np.nan, index=candle_opens, columns=list(BOOK_FEATURE_NAMES))
    if not snapshots or len(candle_opens) == 0:
        return empty
    books = pd.DataFrame(
        [book_features(s) | {"taken_at": pd.Timestamp(s.taken_at)} for s in snapshots]
    ).sort_values("taken_at", kind="stable")
    closes = pd.DataFrame({"close_time": candle_opens + timeframe, "open_time": candle_opens})
    merged = pd.merge_asof(
        closes.sort_values("close_time"),
        books,
        left_on="close_time",
        right_on="taken_at",
        direction="backward",  # never a snapshot from after the close
        tolerance=pd.Timedelta(max_age),
        allow_exact_matches=True,
    )
    return merged.set_index("open_time").reindex(candle_opens)[list(BOOK_FEATURE_NAMES)]
