"""The walk-forward evaluation on real candles: folds in time order with the embargo, the
baseline and buy-and-hold computed in the same run on the same candles."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from core.backtest.policy_eval import buy_and_hold
from core.features.registry import FEATURE_NAMES
from core.models.dataset import LabelSpec
from core.models.evaluation import STRATEGIES, RegimeEvaluation
from core.models.members import XGB_GRID, BoostedTrees
from core.models.policy import PolicyConfig
from core.models.training import EnsembleConfig
from services.evaluation import EvaluationConfig, evaluate_regime, goal_met

H4 = timedelta(hours=4)
CFG = EvaluationConfig(
    label=LabelSpec(H4, 0.003),
    ensemble=EnsembleConfig(horizon=H4, cost=0.003, sequence=None, seed=5),
    members=[BoostedTrees("xgboost", XGB_GRID[:1])],
    policy=PolicyConfig(horizon=4),
    fee_rate=0.001,
    slippage=0.0005,
    periods_per_year=8760,
    folds=2,
)


@pytest.fixture(scope="module")
def evaluated(btc_1h: pd.DataFrame, eth_1h: pd.DataFrame) -> RegimeEvaluation:
    return evaluate_regime(
        "2024", {"BTC/USDT": btc_1h.head(2400), "ETH/USDT": eth_1h.head(2400)}, CFG
    )


def test_evaluate_when_walking_forward_then_folds_ordered_disjoint_after_embargo(
    evaluated: RegimeEvaluation,
) -> None:
    first, second = evaluated.folds
    assert first.end < second.start
    assert evaluated.overall.rows == first.rows + second.rows
    assert set(evaluated.scored["fold"]) == {1, 2}
    # Nothing scored was trained on: the first test row is well after the first candle.
    assert evaluated.scored.index.min() > pd.Timestamp("2024-01-01", tz="UTC") + timedelta(days=30)


def test_evaluate_when_done_then_every_strategy_scored_and_finite(
    evaluated: RegimeEvaluation,
) -> None:
    for fold in [*evaluated.folds, evaluated.overall]:
        assert set(fold.trading) == set(STRATEGIES)
        for result in fold.trading.values():
            assert np.isfinite(list(result.as_dict().values())).all()
        assert 0.3 < fold.model["auc"] < 0.7
        assert 0.3 < fold.baseline_auc < 0.7
    assert set(goal_met(evaluated)) == {"auc", "net_return", "sharpe", "beats_baseline"}


def test_evaluate_when_buy_and_hold_then_equals_holding_each_pair_over_the_fold(
    evaluated: RegimeEvaluation, btc_1h: pd.DataFrame, eth_1h: pd.DataFrame
) -> None:
    fold = evaluated.folds[0]
    nets = []
    for frame in (btc_1h, eth_1h):
        close = frame.set_index("open_time")["close"]
        close = close[(close.index >= fold.start) & (close.index <= fold.end)]
        nets.append(buy_and_hold(close, 0.001, 0.0005, 8760).net_return)
    # Equal weight, rebalanced each candle: close to the mean of the pairs' own returns.
    assert fold.trading["buy_and_hold"].net_return == pytest.approx(np.mean(nets), abs=0.02)


def test_evaluate_when_model_abstains_then_no_trades_and_no_costs(
    evaluated: RegimeEvaluation,
) -> None:
    for fold in evaluated.folds:
        if not fold.tradeable:
            assert fold.trading["model"].trades == 0
            assert fold.trading["model"].fees == 0.0


def test_evaluate_when_overall_then_trades_turnover_and_exposure_from_the_folds(
    evaluated: RegimeEvaluation,
) -> None:
    for strategy in STRATEGIES:
        overall = evaluated.overall.trading[strategy]
        assert overall.trades == sum(f.trading[strategy].trades for f in evaluated.folds)
        assert overall.turnover == pytest.approx(
            sum(f.trading[strategy].turnover for f in evaluated.folds)
        )
        folds = evaluated.folds
        assert overall.exposure == pytest.approx(
            np.average(
                [f.trading[strategy].exposure for f in folds], weights=[f.rows for f in folds]
            )
        )
    assert evaluated.overall.trading["buy_and_hold"].exposure == pytest.approx(1.0, abs=0.01)


def test_evaluate_when_tree_members_kept_then_importance_shares_of_the_features(
    evaluated: RegimeEvaluation,
) -> None:
    assert any(f.weights.get("xgboost", 0) > 0 for f in evaluated.folds)
    assert evaluated.importance.sum() == pytest.approx(1.0)
    assert (evaluated.importance >= 0).all()
    assert evaluated.importance.index.isin(FEATURE_NAMES).all()
