"""Prepare a batch: every read a decision run needs, done once up front (candles, features, the
model's probabilities, order-book features), so deciding itself touches no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import numpy as np
import pandas as pd

from core.candles.bar import Bar
from core.candles.timeframe import timeframe_delta
from core.errors import FatalError
from core.features.build import INCREMENTAL_WINDOW, build_features
from core.features.order_book import book_features_at_closes
from core.features.registry import FEATURE_NAMES
from core.ports import Ledger, Model
from core.types import Symbol, to_decimal
from services.decide.config import DecisionConfig

# Warm-up plus slack: features at the first decided candle are fully formed.
FEATURE_WINDOW = INCREMENTAL_WINDOW


class NoCandles(FatalError, LookupError):
    pass


@dataclass(frozen=True)
class DecisionBatch:
    """The newest candles of every symbol with what deciding them needs; `times` are the open
    times to decide, oldest first."""

    candles: Mapping[str, pd.DataFrame]  # per symbol, indexed by open_time
    features: Mapping[str, pd.DataFrame]
    probabilities: Mapping[str, pd.Series]
    books: Mapping[str, Mapping[pd.Timestamp, Mapping[str, float]]]
    times: list[pd.Timestamp]
    model_name: str
    model_version: str
    feature_set_version: str

    def prices_at(self, t: pd.Timestamp) -> dict[Symbol, Decimal]:
        """The last close known at `t` for every symbol that has started trading by then."""
        return {
            Symbol(s): to_decimal(float(rows["close"].asof(t)))
            for s, rows in self.candles.items()
            if rows.index[0] <= t
        }

    def bar(self, symbol: str, t: pd.Timestamp) -> Bar | None:
        rows = self.candles[symbol]
        if t not in rows.index:
            return None
        row = rows.loc[t]
        values = (to_decimal(float(row[c])) for c in ("open", "high", "low", "close", "volume"))
        return Bar(t.to_pydatetime(), *values)

    def features_at(self, symbol: str, t: pd.Timestamp) -> dict[str, float] | None:
        """The model's features and any order-book features at `t`; None during warm-up."""
        if t not in self.candles[symbol].index:
            return None
        row = self.features[symbol].loc[t]
        probability = self.probabilities[symbol].get(t, np.nan)
        if row.isna().any() or np.isnan(probability):
            return None  # warm-up: not enough history for every feature yet
        return row.to_dict() | dict(self.books[symbol].get(t, {}))

    def probability(self, symbol: str, t: pd.Timestamp) -> float:
        return float(self.probabilities[symbol][t])


def prepare_batch(
    ledger: Ledger,
    model: Model,
    cfg: DecisionConfig,
    candles: int,
    after: datetime | None = None,
) -> DecisionBatch:
    """The newest `candles` candle times (only those after `after`, when given)."""
    frames = {
        s: ledger.candles.load(cfg.exchange, s, cfg.timeframe, limit=candles + FEATURE_WINDOW)
        for s in cfg.symbols
    }
    missing = [s for s, f in frames.items() if f.empty]
    if missing:
        raise NoCandles(
            f"no candles stored for {missing} on {cfg.exchange} {cfg.timeframe}: "
            "run the ingest flow first"
        )
    rows = {s: f.set_index("open_time") for s, f in frames.items()}
    reference = frames[cfg.reference_symbol]
    features = {s: build_features(f, reference) for s, f in frames.items()}
    times = sorted(set().union(*(set(f.index[-candles:]) for f in rows.values())))
    if after is not None:
        times = [t for t in times if t > pd.Timestamp(after)]
    return DecisionBatch(
        candles=rows,
        features=features,
        probabilities={s: _predict(model, features[s]) for s in cfg.symbols},
        books={s: _books(ledger, cfg, s, features[s].index[-candles:]) for s in cfg.symbols},
        times=times,
        model_name=model.name,
        model_version=model.version,
        feature_set_version=model.feature_set_version,
    )


def _books(
    ledger: Ledger,
    cfg: DecisionConfig,
    symbol: str,
    opens: pd.DatetimeIndex,  # type: ignore[type-arg]
) -> dict[pd.Timestamp, dict[str, float]]:
    """Order-book features at each candle close, where a live snapshot was stored no more than
    one candle before it; empty when the source never stored books (files, replays)."""
    if len(opens) == 0:
        return {}
    step = timeframe_delta(cfg.timeframe)
    first, last = opens[0].to_pydatetime(), opens[-1].to_pydatetime() + step
    snapshots = ledger.microstructure.order_books(cfg.exchange, symbol, first, last)
    if not snapshots:
        return {}
    frame = book_features_at_closes(snapshots, opens, step, max_age=step).dropna()
    return {t: row.to_dict() for t, row in frame.iterrows()}


def _predict(model: Model, features: pd.DataFrame) -> pd.Series:
    ready = features.dropna()
    if ready.empty:
        return pd.Series(dtype="float64")
    return pd.Series(model.predict(ready.loc[:, list(FEATURE_NAMES)]), index=ready.index)
