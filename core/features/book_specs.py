"""The order-book features' specs and names (core.features.order_book computes them). Apart
from it so that what only needs their names (a hold's check for an order book, a record's
mapping) does not load pandas and pandera with it: the decision writer process is about 100 MB
smaller without them."""

from __future__ import annotations

from core.features.registry import FeatureSpec

BOOK_DEPTH = 10
_REF = "definition (order book)"

BOOK_FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("book_spread_bps", "microstructure", 0, "(best ask - best bid) / mid * 1e4", _REF),
    FeatureSpec(
        "book_imbalance_top5",
        "microstructure",
        0,
        "(bid qty - ask qty) / (bid qty + ask qty) over the top 5 levels",
        _REF,
        {"levels": 5},
    ),
    FeatureSpec(
        "book_depth_ratio_top10",
        "microstructure",
        0,
        "log(bid notional / ask notional) over the top 10 levels",
        _REF,
        {"levels": BOOK_DEPTH},
    ),
)
BOOK_FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in BOOK_FEATURES)
