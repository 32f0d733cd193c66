"""Walk-forward: [start, end) cut into folds of `retrain_every`; for each fold the ensemble is
fitted on candles strictly before the fold opens (and every training label's future closes by
then), and the fold is backtested with that model on its own memory ledger, starting from the
same cash. The folds' returns are then chained, as if the money had been carried from fold to
fold.

The fold models are not registered in MLflow: each lives for its fold only, is named
`<model name>-walkforward`, version `fold-<n>`, and leaves the registry's champion and its
challengers untouched.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd

from core.backtest.stats import YEAR, max_drawdown_of, sharpe_sortino
from core.candles.timeframe import timeframe_delta
from core.errors import FatalError
from core.features.registry import FEATURE_NAMES, feature_set_version
from core.models.dataset import training_rows
from core.models.ensemble import EnsembleModel
from core.models.training import NotEnoughData, train_ensemble
from core.ports import Model
from services.backtest.engine import BacktestWindow, CandleReader
from services.backtest.session import BacktestParts, BacktestResult, run_backtest
from services.decide.batch import FEATURE_WINDOW
from services.training import TrainingConfig

MODEL_SUFFIX = "-walkforward"
MIN_TRAINING_TIMES = 100  # as time_split asks of a training run


class NoFolds(FatalError, ValueError):
    """The range or the retraining period cannot be cut into folds."""


@dataclass(frozen=True, slots=True)
class Fold:
    number: int  # from 1, oldest first
    train_start: datetime | None  # the oldest row trained on; None: all history before
    test_start: datetime  # trained on candles opening strictly before this
    test_end: datetime  # candles opening before this are tested

    @property
    def window(self) -> BacktestWindow:
        return BacktestWindow(self.test_start, self.test_end)


def plan_folds(
    start: datetime, end: datetime, retrain_every: timedelta, train_window: timedelta | None
) -> list[Fold]:
    """Consecutive test windows of `retrain_every` from `start`; the last one stops at `end`
    (it may be shorter). Each trains on `train_window` before its start, or on everything."""
    if retrain_every <= timedelta(0):
        raise NoFolds(f"the retraining period must be positive, not {retrain_every}")
    if train_window is not None and train_window <= timedelta(0):
        raise NoFolds(f"the training window must be positive, not {train_window}")
    if end <= start:
        raise NoFolds(f"the range {start:%F %T} .. {end:%F %T} is empty")
    folds, opens = [], start
    while opens < end:
        closes = min(opens + retrain_every, end)
        trains_from = opens - train_window if train_window is not None else None
        folds.append(Fold(len(folds) + 1, trains_from, opens, closes))
        opens = closes
    return folds


def remembered(read: CandleReader) -> CandleReader:
    """`read`, asked once per symbol (a fold reads each symbol to train, then to test)."""
    seen: dict[str, pd.DataFrame] = {}

    def read_once(symbol: str) -> pd.DataFrame:
        if symbol not in seen:
            seen[symbol] = read(symbol)
        return seen[symbol]

    return read_once


def label_gap(cfg: TrainingConfig) -> timedelta:
    """How far a label looks ahead of its row: `label_horizon` candles."""
    return cfg.label.horizon


def training_candles(
    read: CandleReader, cfg: TrainingConfig, fold: Fold
) -> dict[str, pd.DataFrame]:
    """Each symbol's candles opening before the fold: from `train_start` less the features'
    warm-up (the backtest's FEATURE_WINDOW candles), so that rows start at `train_start`."""
    warm_up = timeframe_delta(cfg.timeframe) * FEATURE_WINDOW
    out = {}
    for symbol in cfg.symbols:
        frame = read(symbol)
        opens = frame["open_time"]
        keep = opens < fold.test_start
        if fold.train_start is not None:
            keep &= opens >= fold.train_start - warm_up
        out[symbol] = frame[keep].reset_index(drop=True)
    return out


def fold_training_rows(
    candles: Mapping[str, pd.DataFrame], cfg: TrainingConfig, fold: Fold
) -> pd.DataFrame:
    """Rows from `train_start` whose every input closed by the fold's start: a row at t has
    a label from the close of the candle opening at t + horizon, so t + horizon < test_start
    (the same horizon gap time_split keeps between training and validation)."""
    rows = training_rows(candles, cfg.reference_symbol, cfg.label)
    newest_open = fold.test_start - timeframe_delta(cfg.timeframe)
    keep = rows.index + label_gap(cfg) <= newest_open
    if fold.train_start is not None:
        keep &= rows.index >= fold.train_start
    rows = rows[keep]
    times = rows.index.nunique()
    if times < MIN_TRAINING_TIMES or rows["label"].nunique() < 2:
        raise NotEnoughData(
            f"fold {fold.number}: {times} candle times of training rows before "
            f"{fold.test_start:%F %T} (need {MIN_TRAINING_TIMES} and both label classes): "
            "start later or widen --train-window"
        )
    return rows


@dataclass(frozen=True, slots=True)
class TrainedFold:
    model: EnsembleModel
    rows: int
    first: datetime  # the oldest training row's open time
    last: datetime  # the newest


def train_fold(read: CandleReader, cfg: TrainingConfig, fold: Fold) -> TrainedFold:
    rows = fold_training_rows(training_candles(read, cfg, fold), cfg, fold)
    ensemble = train_ensemble(rows, FEATURE_NAMES, cfg.ensemble, cfg.members).model
    model = EnsembleModel(
        cfg.model_name + MODEL_SUFFIX, f"fold-{fold.number}", feature_set_version(), ensemble
    )
    first, last = rows.index.min(), rows.index.max()
    return TrainedFold(model, len(rows), first.to_pydatetime(), last.to_pydatetime())


@dataclass(frozen=True, eq=False)
class FoldResult:
    fold: Fold
    run_id: str
    train_rows: int
    train_first: datetime
    train_last: datetime
    trades: int
    total_return: float
    max_drawdown: float
    sharpe: float | None
    buy_and_hold_return: float
    starting_cash: Decimal
    final_equity: Decimal
    equity: pd.Series  # by candle close time
    seconds: dict[str, float] = field(default_factory=dict)  # train, load, decide, stats
    peak_memory_mb: float | None = None  # the worker's peak resident memory during the fold
    worker: str | None = None  # host:pid of the process that ran it


def run_fold(
    read: CandleReader,
    make_parts: Callable[[Model], BacktestParts],
    cfg: TrainingConfig,
    fold: Fold,
    run_id: str,
    now: datetime,
) -> FoldResult:
    """Train on what came before the fold, then backtest the fold with that model on the
    fresh ledger and exchange `make_parts` builds (the same starting cash every fold)."""
    read = remembered(read)
    started = time.perf_counter()
    trained = train_fold(read, cfg, fold)
    trained_in = time.perf_counter() - started
    parts = make_parts(trained.model)
    params = {"fold": str(fold.number), "train_rows": str(trained.rows)}
    result = run_backtest(read, parts, fold.window, run_id, now, params)
    return fold_result(fold, trained, result, {"train": trained_in, **result.seconds})


def fold_result(
    fold: Fold, trained: TrainedFold, result: BacktestResult, seconds: Mapping[str, float]
) -> FoldResult:
    run = result.stats.run
    return FoldResult(
        fold=fold,
        run_id=result.run.run_id,
        train_rows=trained.rows,
        train_first=trained.first,
        train_last=trained.last,
        trades=run.trades,
        total_return=run.total_return,
        max_drawdown=run.max_drawdown,
        sharpe=run.sharpe,
        buy_and_hold_return=run.buy_and_hold_return,
        starting_cash=run.starting_cash,
        final_equity=run.final_equity,
        equity=result.stats.equity,
        seconds=dict(seconds),
    )


@dataclass(frozen=True, eq=False)
class WalkForwardSummary:
    folds: list[FoldResult]  # oldest first
    chained_return: float  # the folds' returns compounded
    chained_buy_and_hold: float  # the folds' buy-and-hold returns compounded
    max_drawdown: float  # of the chained curve
    sharpe: float | None  # of the chained curve, per candle, annualised; None when flat
    growth: pd.Series  # what 1 became, at every candle close of every fold


def chain_returns(returns: Sequence[float]) -> float:
    """Fold returns compounded: the cash each fold ends with is what the next one starts on."""
    return math.prod(1.0 + r for r in returns) - 1.0


def chained_growth(folds: Sequence[FoldResult]) -> pd.Series:
    """Each fold's equity over its starting cash, scaled by what the folds before it made."""
    parts, carried = [], 1.0
    for result in folds:
        relative = result.equity.astype(float) / float(result.starting_cash)
        parts.append(relative * carried)
        carried *= 1.0 + result.total_return
    return pd.concat(parts).rename("growth") if parts else pd.Series(dtype=float, name="growth")


def curve_figures(growth: pd.Series, timeframe: str) -> tuple[float, float | None]:
    """(max drawdown, annualised Sharpe) of a growth curve that starts from 1."""
    values = np.concatenate(([1.0], growth.to_numpy(dtype=float)))
    sharpe, _ = sharpe_sortino(values[1:] / values[:-1] - 1.0, YEAR / timeframe_delta(timeframe))
    return max_drawdown_of(values), sharpe


def summarise(folds: Sequence[FoldResult], timeframe: str) -> WalkForwardSummary:
    ordered = sorted(folds, key=lambda r: r.fold.number)
    growth = chained_growth(ordered)
    depth, sharpe = curve_figures(growth, timeframe) if len(growth) else (0.0, None)
    return WalkForwardSummary(
        folds=ordered,
        chained_return=chain_returns([r.total_return for r in ordered]),
        chained_buy_and_hold=chain_returns([r.buy_and_hold_return for r in ordered]),
        max_drawdown=depth,
        sharpe=sharpe,
        growth=growth,
    )


FOLD_HEADER = (
    "fold", "train", "rows", "test", "trades", "return", "max drawdown", "sharpe",
    "buy and hold", "seconds", "peak MB",
)  # fmt: skip


def fold_rows(summary: WalkForwardSummary) -> list[tuple[str, ...]]:
    """The per-fold table, one tuple of cells per fold (FOLD_HEADER), then the chained row."""
    rows = [
        (
            str(r.fold.number),
            f"{r.train_first:%F %H:%M} .. {r.train_last:%F %H:%M}",
            str(r.train_rows),
            f"{r.fold.test_start:%F %H:%M} .. {r.fold.test_end:%F %H:%M}",
            str(r.trades),
            f"{r.total_return:+.2%}",
            f"{r.max_drawdown:.2%}",
            _number(r.sharpe),
            f"{r.buy_and_hold_return:+.2%}",
            f"{sum(r.seconds.values()):.1f}",
            _number(r.peak_memory_mb, "{:.0f}"),
        )
        for r in summary.folds
    ]
    trades = sum(r.trades for r in summary.folds)
    chained = ("chained", "", "", "", str(trades), f"{summary.chained_return:+.2%}",
               f"{summary.max_drawdown:.2%}", _number(summary.sharpe),
               f"{summary.chained_buy_and_hold:+.2%}", "", "")  # fmt: skip
    return [*rows, chained]


def _number(value: float | None, pattern: str = "{:.2f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def report_page(summary: WalkForwardSummary, title: str, meta: Mapping[str, str]) -> str:
    """One self-contained HTML page (plotly.js inline, so it opens offline): what was run,
    the per-fold table, the chained growth of 1 with the fold boundaries, and each fold's
    return beside buy and hold."""
    from html import escape

    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(
        rows=2, cols=1, vertical_spacing=0.12, subplot_titles=("Chained growth", "Per fold")
    )
    growth = go.Scatter(x=summary.growth.index, y=summary.growth.to_numpy(), name="walk-forward")
    figure.add_trace(growth, row=1, col=1)
    for result in summary.folds[1:]:
        figure.add_vline(x=result.fold.test_start, line_dash="dot", line_color="#999")
    labels = [f"fold {r.fold.number}" for r in summary.folds]
    strategy = [r.total_return for r in summary.folds]
    market = [r.buy_and_hold_return for r in summary.folds]
    for name, values in (("strategy", strategy), ("buy and hold", market)):
        figure.add_trace(go.Bar(x=labels, y=values, name=name), row=2, col=1)
    figure.update_yaxes(tickformat=".1%", row=2, col=1)
    figure.update_layout(height=750, barmode="group", margin={"t": 40})

    def cells(tag: str, row: Sequence[str]) -> str:
        return "<tr>" + "".join(f"<{tag}>{escape(c)}</{tag}>" for c in row) + "</tr>"

    about = "".join(cells("td", (k, v)) for k, v in meta.items())
    folds = cells("th", FOLD_HEADER) + "".join(cells("td", r) for r in fold_rows(summary))
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f"</title><style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>"
        f'<table id="about">{about}</table><h2>Folds</h2><table id="folds">{folds}</table>'
        f'<h2>Equity</h2><div id="equity">{figure.to_html(full_html=False, include_plotlyjs=True)}'
        "</div></body></html>\n"
    )


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5rem 2rem;color:#222}"
    "table{border-collapse:collapse;margin:.5rem 0 1rem}"
    "th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}"
    "td:first-child{text-align:left}#folds tr:last-child td{font-weight:bold;background:#f3f3f3}"
)
