"""Walk-forward: fold boundaries, no fold trained on its own candles (labels included), the
folds' returns chained, and one real fold trained and backtested."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest

from core.models.dataset import LabelSpec, training_rows
from core.models.members import XGB_GRID, BoostedTrees
from core.models.promotion import PromotionPolicy
from core.models.training import EnsembleConfig
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from infra.ledger.memory import MemoryLedger
from services.backtest.compose import BacktestAlerts
from services.backtest.session import BacktestParts
from services.backtest.walk_forward import (
    MODEL_SUFFIX,
    Fold,
    FoldResult,
    NoFolds,
    chain_returns,
    fold_rows,
    fold_training_rows,
    plan_folds,
    report_page,
    run_fold,
    summarise,
    training_candles,
)
from services.training import TrainingConfig
from tests.services.backtest.test_identity import AGENTS, _config

HOUR = timedelta(hours=1)
CFG = TrainingConfig(
    exchange="binance",
    symbols=("BTC/USDT", "ETH/USDT"),
    timeframe="1h",
    model_name="tradeflow-direction",
    reference_symbol="BTC/USDT",
    label=LabelSpec(4 * HOUR, 0.0),
    ensemble=EnsembleConfig(horizon=4 * HOUR, cost=0.0, sequence=None, seed=42),
    members=[BoostedTrees("xgboost", XGB_GRID[:1])],
    promotion=PromotionPolicy(),
)


def at(day: int, month: int = 3) -> datetime:
    return datetime(2024, month, day, tzinfo=UTC)


@pytest.fixture
def frames(btc_1h: pd.DataFrame, eth_1h: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {"BTC/USDT": btc_1h, "ETH/USDT": eth_1h}


def test_plan_folds_when_range_is_not_a_multiple_then_contiguous_and_last_fold_shorter() -> None:
    # Act
    folds = plan_folds(at(1), at(1, 9), timedelta(days=30), timedelta(days=60))
    # Assert
    assert len(folds) == 7
    assert [f.number for f in folds] == list(range(1, 8))
    assert folds[0].test_start == at(1)
    assert folds[-1].test_end == at(1, 9)
    assert all(a.test_end == b.test_start for a, b in itertools.pairwise(folds))
    assert all(f.test_end - f.test_start == timedelta(days=30) for f in folds[:-1])
    assert folds[-1].test_end - folds[-1].test_start == timedelta(days=4)
    assert all(f.train_start == f.test_start - timedelta(days=60) for f in folds)


def test_plan_folds_when_no_train_window_then_each_trains_on_all_history() -> None:
    folds = plan_folds(at(1), at(11), timedelta(days=5), None)
    assert [(f.train_start, f.test_start, f.test_end) for f in folds] == [
        (None, at(1), at(6)),
        (None, at(6), at(11)),
    ]


@pytest.mark.parametrize(
    ("start", "end", "every", "window"),
    [
        (at(2), at(1), timedelta(days=1), None),
        (at(1), at(1), timedelta(days=1), None),
        (at(1), at(2), timedelta(0), None),
        (at(1), at(2), timedelta(days=1), timedelta(0)),
    ],
)
def test_plan_folds_when_range_or_periods_are_empty_then_refused(
    start: datetime, end: datetime, every: timedelta, window: timedelta | None
) -> None:
    with pytest.raises(NoFolds):
        plan_folds(start, end, every, window)


def test_training_rows_when_fold_planned_then_none_at_or_after_its_start_labels_included(
    frames: dict[str, pd.DataFrame],
) -> None:
    # Arrange
    fold = Fold(1, at(1) - timedelta(days=30), at(1), at(8))
    # Act
    candles = training_candles(frames.__getitem__, CFG, fold)
    rows = fold_training_rows(candles, CFG, fold)
    # Assert: the candles read, and each row's label window, end before the fold
    for frame in candles.values():
        assert frame["open_time"].max() < fold.test_start
    assert rows.index.min() == fold.train_start  # the features' warm-up was read before it
    assert rows.index.max() + CFG.label.horizon < fold.test_start
    assert rows.index.max() + CFG.label.horizon + HOUR <= fold.test_start  # its close
    # ... and their labels are the ones the whole history gives (none was cut short)
    everything = training_rows(frames, "BTC/USDT", CFG.label)
    inside = (everything.index >= rows.index.min()) & (everything.index <= rows.index.max())
    same = everything.loc[inside, ["symbol", "label"]]
    pd.testing.assert_frame_equal(rows[["symbol", "label"]], same)


def test_training_rows_when_window_has_too_few_candles_then_not_enough_data(
    frames: dict[str, pd.DataFrame],
) -> None:
    from core.models.training import NotEnoughData

    fold = Fold(1, at(1) - timedelta(hours=10), at(1), at(2))
    with pytest.raises(NotEnoughData):
        fold_training_rows(training_candles(frames.__getitem__, CFG, fold), CFG, fold)


def result(number: int, ret: float, equity: list[float], bh: float = 0.0) -> FoldResult:
    start = at(number)
    fold = Fold(number, None, start, start + len(equity) * HOUR)
    index = pd.date_range(start + HOUR, periods=len(equity), freq="1h")
    return FoldResult(
        fold=fold, run_id=f"r-f{number}", train_rows=100, train_first=at(1, 1),
        train_last=start - 5 * HOUR, trades=2, total_return=ret, max_drawdown=0.0, sharpe=None,
        buy_and_hold_return=bh, starting_cash=Decimal(100), final_equity=Decimal(100 * (1 + ret)),
        equity=pd.Series(equity, index=index), peak_memory_mb=321.0,
    )  # fmt: skip


def test_chain_returns_when_folds_gain_then_lose_then_compounded() -> None:
    assert chain_returns([0.10, -0.05]) == pytest.approx(1.10 * 0.95 - 1)
    assert chain_returns([]) == 0.0


def test_summarise_when_two_folds_then_growth_carries_each_folds_result_into_the_next() -> None:
    # Arrange: fold 2 comes back first, as a parallel run may deliver it
    second = result(2, -0.05, [90.0, 95.0], bh=0.02)
    first = result(1, 0.10, [105.0, 110.0], bh=-0.01)
    # Act
    summary = summarise([second, first], "1h")
    # Assert
    assert [r.fold.number for r in summary.folds] == [1, 2]
    assert summary.chained_return == pytest.approx(1.10 * 0.95 - 1)
    assert summary.chained_buy_and_hold == pytest.approx(0.99 * 1.02 - 1)
    assert summary.growth.tolist() == pytest.approx([1.05, 1.10, 0.99, 1.045])
    assert summary.growth.iloc[-1] == pytest.approx(1 + summary.chained_return)
    assert summary.max_drawdown == pytest.approx(1 - 0.99 / 1.10)
    assert summary.sharpe is not None


def test_fold_rows_when_summarised_then_one_row_per_fold_and_the_chained_row() -> None:
    summary = summarise([result(1, 0.10, [110.0]), result(2, -0.05, [95.0])], "1h")
    rows = fold_rows(summary)
    assert [r[0] for r in rows] == ["1", "2", "chained"]
    assert rows[0][5] == "+10.00%"
    assert rows[-1][5] == "+4.50%"
    assert rows[0][-1] == "321"
    page = report_page(summary, "wf", {"run id": "r"})
    assert 'id="folds"' in page
    assert "+4.50%" in page


def test_run_fold_when_trained_before_the_fold_then_backtested_on_fresh_ledger_from_same_cash(
    frames: dict[str, pd.DataFrame],
) -> None:
    # Arrange
    fold = Fold(3, at(1) - timedelta(days=20), at(1), at(1) + 48 * HOUR)
    cfg = replace(_config(), account="bt-wf-f3")
    made: list[BacktestParts] = []

    def make_parts(model: object) -> BacktestParts:
        made.append(BacktestParts(MemoryLedger(), SimulatedBroker(SimulationConfig()), model,
                                  AGENTS, cfg, BacktestAlerts(), Decimal(10000)))  # type: ignore[arg-type]  # fmt: skip
        return made[-1]

    # Act
    out = run_fold(frames.__getitem__, make_parts, CFG, fold, "wf-f3", datetime.now(UTC))
    # Assert
    model = made[0].model
    assert (model.name, model.version) == (CFG.model_name + MODEL_SUFFIX, "fold-3")
    assert out.train_last + CFG.label.horizon < fold.test_start
    assert out.starting_cash == Decimal(10000)
    assert len(out.equity) == 48
    assert out.equity.index[0] == fold.test_start + HOUR
    assert set(out.seconds) >= {"train", "load", "decide", "stats"}
    assert math.isclose(out.total_return, float(out.final_equity) / 10000 - 1)
