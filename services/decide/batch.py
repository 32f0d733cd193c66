"""Prepare a batch: every read a decision run needs, done once up front (candles, features, the
model's probabilities, order-book features), so deciding itself touches no I/O."""

from __future__ import annotations

import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import numpy as np
import pandas as pd

from core.candles.bar import Bar
from core.candles.timeframe import timeframe_delta
from core.consensus import ConsensusConfig
from core.errors import FatalError
from core.features.build import INCREMENTAL_WINDOW, build_features
from core.features.order_book import book_features_at_closes
from core.features.registry import FEATURE_NAMES
from core.features.row import FeatureRow
from core.holds import HoldRows
from core.models.policy import holds_flat
from core.ports import Model, TradingLedger
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
    edges: Mapping[str, pd.Series]
    books: Mapping[str, Mapping[pd.Timestamp, Mapping[str, float]]]
    times: list[pd.Timestamp]
    model_name: str
    model_version: str
    feature_set_version: str
    tradeable: bool = False
    quality: Mapping[str, float] = field(default_factory=dict)  # the model's, out of sample
    # The model's call for this batch: its wall seconds and the rows it predicted (a recorded
    # decision keeps its share: services.decide.step.timings).
    predict_seconds: float = 0.0
    predictions: int = 0
    # Per symbol, which candles had every feature (aligned with `candles`): given when
    # `features` keeps only some of them (prepare_batch's `keep`); else read from `features`.
    complete: Mapping[str, np.ndarray] | None = None
    # Row lookups built once: a replay asks for every symbol at every candle time, and a pandas
    # row lookup costs more than the decision it feeds.
    _rows: dict[str, _Rows] = field(init=False, repr=False, compare=False)
    _prices: tuple[int | None, dict[Symbol, Decimal]] = field(
        init=False, repr=False, compare=False
    )  # the newest candle time asked, and its prices
    # Per symbol, the ready rows where a flat symbol's policy holds (flat_hold_row), and the
    # consensus they were found for.
    _flat_holds: tuple[ConsensusConfig | None, dict[str, np.ndarray]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        rows = {
            s: _Rows.of(
                frame,
                self.features[s],
                self.probabilities[s],
                self.edges[s],
                None if self.complete is None else self.complete[s],
            )
            for s, frame in self.candles.items()
        }
        object.__setattr__(self, "_rows", rows)
        object.__setattr__(self, "_prices", (None, {}))
        object.__setattr__(self, "_flat_holds", (None, {}))

    def prices_at(self, t: pd.Timestamp) -> dict[Symbol, Decimal]:
        """The last close known at `t` for every symbol that has started trading by then (a
        copy: the loop and the step both ask at each candle time, and build on the answer)."""
        seen, prices = self._prices
        if seen != t.value:
            prices = {}
            for s, rows in self._rows.items():
                at = rows.at_or_before(t)
                if at is not None:
                    prices[Symbol(s)] = rows.close(at)
            object.__setattr__(self, "_prices", (t.value, prices))
        return dict(prices)

    def has(self, symbol: str, t: pd.Timestamp) -> bool:
        return t.value in self._rows[symbol].position

    def bar(self, symbol: str, t: pd.Timestamp) -> Bar | None:
        rows = self._rows[symbol]
        at = rows.position.get(t.value)
        return None if at is None else rows.bar(at)

    def features_at(self, symbol: str, t: pd.Timestamp) -> FeatureRow | None:
        """The model's features and any order-book features at `t`; None during warm-up."""
        rows = self._rows[symbol]
        at = rows.position.get(t.value)
        if at is None or not rows.ready[at]:
            return None  # not a candle of this symbol, or warm-up: a feature or p is missing
        return FeatureRow(rows.index, rows.matrix, at, self.books[symbol].get(t))

    def read_at(self, symbol: str, t: pd.Timestamp) -> tuple[FeatureRow, float, float] | None:
        """`features_at`, `probability` and `edge` at `t` from one row lookup (the step reads
        all three for every symbol at every candle time); None during warm-up."""
        rows = self._rows[symbol]
        at = rows.position.get(t.value)
        if at is None or not rows.ready[at]:
            return None
        features = FeatureRow(rows.index, rows.matrix, at, self.books[symbol].get(t))
        return features, float(rows.probability[at]), float(rows.edge[at])

    def flat_hold_row(self, symbol: str, t: pd.Timestamp, consensus: ConsensusConfig) -> int | None:
        """The row of `symbol` at `t` when it is ready and the policy holds it if flat
        (core.models.policy.holds_flat); else None. Found for every row at the first ask: a
        backtest asks at each candle time of each symbol that holds nothing."""
        rows = self._rows[symbol]
        at = rows.position.get(t.value)
        if at is None:
            return None
        found_for, found = self._flat_holds
        if found_for is not consensus:
            found = {}
            object.__setattr__(self, "_flat_holds", (consensus, found))
        holds = found.get(symbol)
        if holds is None:
            tradeable = self.tradeable or not consensus.require_significance
            holds = found[symbol] = rows.ready & holds_flat(rows.edge, consensus.policy, tradeable)
        return at if holds[at] else None

    def hold_rows(self, cfg: DecisionConfig, marks: list[tuple[int, int]]) -> HoldRows:
        """The rows `marks` (an index into `symbols`, a row of that symbol) as columns, in
        order: a copy of just their values, gathered a symbol at a time."""
        symbols = tuple(cfg.symbols)
        which = np.fromiter((m[0] for m in marks), dtype=np.int64, count=len(marks))
        at = np.fromiter((m[1] for m in marks), dtype=np.int64, count=len(marks))
        first = self._rows[symbols[0]]
        features = np.empty((len(marks), first.matrix.shape[1]), dtype="float64")
        opened, close = np.empty(len(marks), "int64"), np.empty(len(marks), "float64")
        p, edge = np.empty(len(marks), "float64"), np.empty(len(marks), "float64")
        books: dict[int, Mapping[str, float]] = {}
        for k, symbol in enumerate(symbols):
            mine = np.flatnonzero(which == k)
            if not len(mine):
                continue
            rows, chosen = self._rows[symbol], at[mine]
            if rows.index != first.index:
                raise ValueError(f"{symbol}'s features differ from {symbols[0]}'s")
            features[mine] = rows.matrix[chosen]
            opened[mine] = rows.opens[chosen] // 1_000_000_000
            close[mine], p[mine] = rows.ohlcv[chosen, 3], rows.probability[chosen]
            edge[mine] = rows.edge[chosen]
            seen = self.books[symbol]
            for i in mine if seen else ():
                book = seen.get(pd.Timestamp(int(rows.opens[at[i]]), tz="UTC"))
                if book is not None:
                    books[int(i)] = book
        return HoldRows(
            account=cfg.account,
            timeframe=cfg.timeframe,
            symbols=symbols,
            symbol=which,
            opened=opened,
            close=close,
            probability=p,
            edge=edge,
            index=first.index,
            features=features,
            books=books,
        )

    def probability(self, symbol: str, t: pd.Timestamp) -> float:
        rows = self._rows[symbol]
        return float(rows.probability[rows.position[t.value]])


class Positions:
    """The row of each candle open time (int ns). Candles lie on a regular grid, so the row is
    computed from the first open and the step and checked against the stored time; a time off
    the grid (a gap in the data) is found by binary search. A dict of every time held about 100
    bytes a candle: about 57 MB on 8 pairs x 8 months of 5m candles."""

    __slots__ = ("_first", "_n", "_opens", "_step")

    def __init__(self, opens: np.ndarray) -> None:
        # ascending; an array.array hands out a plain int per index, faster than numpy's scalar
        self._opens = array("q", opens.tobytes())
        self._n = len(opens)
        self._first = int(opens[0]) if self._n else 0
        self._step = int(opens[1] - opens[0]) if self._n > 1 else 0

    def get(self, t: int) -> int | None:
        if self._step:
            at = (t - self._first) // self._step
            if 0 <= at < self._n and self._opens[at] == t:
                return at
        at = bisect_left(self._opens, t)
        return at if at < self._n and self._opens[at] == t else None

    def __getitem__(self, t: int) -> int:
        at = self.get(t)
        if at is None:
            raise KeyError(t)
        return at

    def __contains__(self, t: int) -> bool:
        return self.get(t) is not None


@dataclass(frozen=True)
class _Rows:
    """One symbol's candles, features and probabilities as arrays, by candle position."""

    position: Positions  # open time in ns -> row
    opens: np.ndarray  # open times, int64 ns, ascending
    ohlcv: np.ndarray  # float64, one row per candle
    index: Mapping[str, int]  # feature name -> column
    matrix: np.ndarray  # features, float64, aligned with the candles
    probability: np.ndarray  # NaN where the model gave none
    edge: np.ndarray  # the policy's expected net return; NaN where p is
    ready: np.ndarray  # no feature missing and a probability given

    @classmethod
    def of(
        cls,
        candles: pd.DataFrame,
        features: pd.DataFrame,
        probability: pd.Series,
        edge: pd.Series,
        complete: np.ndarray | None = None,
    ) -> _Rows:
        index = candles.index
        # A view of the frame's own block where it can be (a long backtest's features are
        # most of its memory); a decision reads single values, so the layout does not matter.
        same = features.index.equals(index)
        matrix = (features if same else features.reindex(index)).to_numpy(dtype="float64")
        p, e = _aligned(probability, index), _aligned(edge, index)
        if complete is None:
            complete = ~np.isnan(matrix).any(axis=1)
        ready = complete & ~np.isnan(p)
        return cls(
            position=Positions(index.asi8),
            opens=index.asi8,
            ohlcv=np.column_stack([candles[c].to_numpy(dtype="float64") for c in _OHLCV]),
            index={name: i for i, name in enumerate(features.columns)},
            matrix=matrix,
            probability=p,
            edge=e,
            ready=ready,
        )

    def at_or_before(self, t: pd.Timestamp) -> int | None:
        at = self.position.get(t.value)
        if at is not None:
            return at
        before = int(np.searchsorted(self.opens, t.value, side="right")) - 1
        return before if before >= 0 else None

    def value(self, at: int, column: int) -> Decimal:
        return to_decimal(float(self.ohlcv[at, column]))

    def close(self, at: int) -> Decimal:
        return self.value(at, 3)

    def bar(self, at: int) -> Bar:
        opened = pd.Timestamp(self.opens[at], tz="UTC").to_pydatetime()
        return Bar(opened, *(self.value(at, c) for c in range(5)))


_OHLCV = ("open", "high", "low", "close", "volume")


def _aligned(values: pd.Series, index: pd.DatetimeIndex) -> np.ndarray:  # type: ignore[type-arg]
    """`values` at each time of `index`, NaN where it has none (a reindex without pandas'
    checks: a live run's few probabilities onto its 800 candles)."""
    out = np.full(len(index), np.nan)
    if len(values):
        at = index.get_indexer(values.index)
        found = at >= 0
        out[at[found]] = values.to_numpy(dtype="float64")[found]
    return out


def prepare_batch(
    ledger: TradingLedger,
    model: Model,
    cfg: DecisionConfig,
    candles: int,
    after: datetime | None = None,
    timer: Callable[[], float] = time.perf_counter,
    keep: Collection[str] | None = None,
) -> DecisionBatch:
    """The newest `candles` candle times (only those after `after`, when given). The model's
    call is timed with `timer` (seconds): once a batch, so a backtest's one batch pays nothing.
    With `keep`, the batch keeps only those features (what the panel reads): each symbol's are
    built, predicted on and cut down before the next symbol's are built, so a long backtest
    never holds every symbol's ~90 features at once (400 MB for 8 pairs x 8 months)."""
    frames = _load(ledger, cfg, candles + FEATURE_WINDOW)
    rows = {s: f.set_index("open_time") for s, f in frames.items()}
    reference = frames[cfg.reference_symbol]
    # Unioned as int64 nanoseconds: sets of Timestamps cost 100 MB on a long backtest.
    opens = np.unique(np.concatenate([f.index[-candles:].asi8 for f in rows.values()]))
    if after is not None:
        opens = opens[opens > pd.Timestamp(after).value]
    wanted = pd.DatetimeIndex(opens, tz="UTC")
    if keep is None:
        features = {s: build_features(f, reference) for s, f in frames.items()}
        started = timer()
        probabilities = predict_at_times(model, features, wanted)
        predict_seconds, complete = timer() - started, None
    else:
        features, probabilities, complete, predict_seconds = _symbol_by_symbol(
            frames, reference, model, wanted, keep, timer
        )
    return DecisionBatch(
        candles=rows,
        features=features,
        probabilities=probabilities,
        edges={
            s: pd.Series(model.edge(p.to_numpy()), index=p.index, dtype="float64")
            for s, p in probabilities.items()
        },
        books={s: _books(ledger, cfg, s, features[s].index[-candles:]) for s in cfg.symbols},
        times=list(wanted),
        model_name=model.name,
        model_version=model.version,
        feature_set_version=model.feature_set_version,
        tradeable=model.tradeable,
        quality=dict(model.quality),
        predict_seconds=predict_seconds,
        predictions=sum(len(p) for p in probabilities.values()),
        complete=complete,
    )


def _load(ledger: TradingLedger, cfg: DecisionConfig, limit: int) -> dict[str, pd.DataFrame]:
    """The newest `limit` candles of every symbol; NoCandles when a symbol has none."""
    frames = {
        s: ledger.candles.load(cfg.exchange, s, cfg.timeframe, limit=limit) for s in cfg.symbols
    }
    missing = [s for s, f in frames.items() if f.empty]
    if missing:
        raise NoCandles(
            f"no candles stored for {missing} on {cfg.exchange} {cfg.timeframe}: "
            "run the ingest flow first"
        )
    return frames


def _symbol_by_symbol(
    frames: Mapping[str, pd.DataFrame],
    reference: pd.DataFrame,
    model: Model,
    wanted: pd.DatetimeIndex,  # type: ignore[type-arg]
    keep: Collection[str],
    timer: Callable[[], float],
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.Series], dict[str, np.ndarray], float]:
    """Features built, predicted on and cut to `keep` one symbol at a time (prepare_batch).
    The next symbol's features are built in a thread while the model reads this one's: both
    run mostly outside the interpreter's lock (numpy, TA-Lib, the boosters), so a backtest's
    start uses the second core its decision writer does not use yet. No more than two
    symbols' whole features exist at once."""
    kept = [name for name in FEATURE_NAMES if name in keep]
    features, probabilities, complete, seconds = {}, {}, {}, 0.0
    ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="features")
    each = _built_ahead(ahead, frames, reference)
    try:
        for symbol, frame, built in each:
            started = timer()
            probabilities[symbol] = predict_at_times(model, {symbol: built}, wanted)[symbol]
            seconds += timer() - started
            index = pd.DatetimeIndex(frame["open_time"])
            full = built if built.index.equals(index) else built.reindex(index)
            complete[symbol] = ~np.isnan(full.to_numpy(dtype="float64")).any(axis=1)
            features[symbol] = built.loc[:, kept].copy()
            del built, full  # before the one after next is built
    finally:  # an error leaves no build running, and no thread or features kept alive
        each.close()
        ahead.shutdown(wait=True, cancel_futures=True)
    return features, probabilities, complete, seconds


def _built_ahead(
    ahead: ThreadPoolExecutor, frames: Mapping[str, pd.DataFrame], reference: pd.DataFrame
) -> Iterator[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """Each symbol with its candles and their features, the next symbol's being built on
    `ahead` while the caller works on these."""
    symbols = list(frames)
    coming = [ahead.submit(build_features, frames[s], reference) for s in symbols[:1]]
    for k, symbol in enumerate(symbols):
        built = coming.pop().result()
        coming = [
            ahead.submit(build_features, frames[s], reference) for s in symbols[k + 1 : k + 2]
        ]
        yield symbol, frames[symbol], built
        del built


def _books(
    ledger: TradingLedger,
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


_PREDICT_CHUNK = 20_000  # rows per model call: a long backtest copies one chunk at a time


def predict_at_times(
    model: Model, features: Mapping[str, pd.DataFrame], times: pd.DatetimeIndex
) -> dict[str, pd.Series]:
    """The model's probability at the candle times to decide only (a live run decides one
    candle of the 800 it computes features on), each with the `model.context` rows before it
    that a sequence member reads. Up to _PREDICT_CHUNK wanted rows, every symbol's go in one
    call (a model's fixed cost per call is most of a small prediction); more, and they go
    symbol by symbol in chunks that overlap by the context, so no copy of all features, nor of
    one symbol's, is ever made."""
    columns = list(FEATURE_NAMES)
    wanted = {s: np.isin(_nanoseconds(f.index), _nanoseconds(times)) for s, f in features.items()}
    if sum(int(w.sum()) for w in wanted.values()) > _PREDICT_CHUNK:
        return {s: _predict_long(model, f, wanted[s], columns) for s, f in features.items()}
    parts = {s: _context_rows(f, wanted[s], model.context, columns) for s, f in features.items()}
    if not any(keep.any() for _, _, keep in parts.values()):
        return {s: pd.Series(dtype="float64") for s in features}
    # One call, never chunked: a chunk's edge would cut a symbol's context rows off. Stacked
    # as arrays: pandas' concat and row lookups cost more than a live decision's prediction.
    opens = np.concatenate([_nanoseconds(t) for t, _, _ in parts.values()])
    times_level, time_codes = np.unique(opens, return_inverse=True)
    counts = [len(t) for t, _, _ in parts.values()]
    index = pd.MultiIndex(
        levels=[pd.Index(list(parts)), pd.DatetimeIndex(times_level, tz="UTC")],
        codes=[np.repeat(np.arange(len(parts)), counts), time_codes],
        names=["symbol", "open_time"],
        verify_integrity=False,
    )
    values = np.concatenate([x for _, x, _ in parts.values()])
    p = np.asarray(
        model.predict(pd.DataFrame(values, index=index, columns=columns, copy=False)),
        dtype="float64",
    )
    out, at = {}, 0
    for s, (rows, _, keep) in parts.items():
        mine = p[at : at + len(rows)]
        at += len(rows)
        out[s] = pd.Series(mine[keep], index=rows[keep])
    return out


def _context_rows(
    features: pd.DataFrame, wanted: np.ndarray, context: int, columns: list[str]
) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """The complete rows from `context` before the first wanted one (their times, and their
    values in `columns`' order), and which of them are wanted. Sliced before copying: a live
    run wants 1 row of 800."""
    if not wanted.any():
        return features.index[:0], np.zeros((0, len(columns))), wanted[:0]
    part = features.iloc[max(0, int(np.argmax(wanted)) - context) :]
    if list(part.columns) != columns:
        part = part.loc[:, columns]
    values = part.to_numpy(dtype="float64")
    complete = ~np.isnan(values).any(axis=1)
    return part.index[complete], values[complete], wanted[-len(part) :][complete]


def _nanoseconds(times: pd.Index) -> np.ndarray:
    """Open times as int64 nanoseconds, whatever the index's unit. A DatetimeIndex already in
    nanoseconds (every batch's) is read as it is: building a new index from it cost 35 us, and
    a live run asks three times a symbol."""
    index = times if isinstance(times, pd.DatetimeIndex) else pd.DatetimeIndex(times)
    return np.asarray(index.asi8 if index.unit == "ns" else index.as_unit("ns").asi8)


def _predict_long(
    model: Model, features: pd.DataFrame, wanted: np.ndarray, columns: list[str]
) -> pd.Series:
    """One symbol of a long backtest: its complete rows from `model.context` before the first
    wanted one, predicted in chunks that overlap by the context. Only a chunk's rows are ever
    copied."""
    context = model.context
    if not wanted.any():
        return pd.Series(dtype="float64")
    part = features.iloc[max(0, int(np.argmax(wanted)) - context) :]  # a view
    complete = np.ones(len(part), dtype=bool)
    for name in columns:  # a column at a time: no copy of the frame
        complete &= part[name].notna().to_numpy()
    at = np.flatnonzero(complete)
    keep = wanted[-len(part) :][complete]
    chunks = []
    for i in range(0, len(at), _PREDICT_CHUNK):
        start = max(0, i - context)
        rows = part.iloc[at[start : i + _PREDICT_CHUNK]].loc[:, columns]
        chunks.append(np.asarray(model.predict(rows), dtype="float64")[i - start :])
    p = np.concatenate(chunks) if chunks else np.zeros(0)
    return pd.Series(p[keep], index=part.index[at][keep], dtype="float64")
