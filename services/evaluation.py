"""The honest evaluation: purged walk-forward over a regime's pairs. Each outer fold trains the
whole ensemble (with its own inner out-of-fold calibration and stacking) on the past only, an
embargo of the label horizon before the fold, and scores the fold: ranking and calibration,
then the decision policy traded with costs beside a naive baseline and buy-and-hold, computed
in the same run on the same candles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from core.backtest.policy_eval import (
    Ledger,
    TradingResult,
    combine_ledgers,
    combine_results,
    ledger,
    summarise,
)
from core.features.registry import FEATURE_NAMES
from core.models.baseline import BASELINE_FEATURES, baseline_features, fit_baseline, sign_label
from core.models.dataset import LabelSpec, training_rows
from core.models.ensemble import StackedEnsemble, with_context
from core.models.evaluation import STRATEGIES, FoldScores, RegimeEvaluation
from core.models.members import Member
from core.models.metrics import scores
from core.models.policy import PolicyConfig, positions
from core.models.purged import Fold, walk_forward_folds
from core.models.training import EnsembleConfig, train_ensemble
from services.training import check_same_label


@dataclass(frozen=True)
class EvaluationConfig:
    label: LabelSpec
    ensemble: EnsembleConfig
    members: Sequence[Member]
    policy: PolicyConfig
    fee_rate: float
    slippage: float
    periods_per_year: float
    reference_symbol: str = "BTC/USDT"
    folds: int = 4
    min_train_fraction: float = 0.4

    def __post_init__(self) -> None:
        check_same_label(self.label, self.ensemble)


@dataclass
class _Books:
    """Per strategy, the fold portfolios' ledgers, oldest fold first."""

    parts: dict[str, list[Ledger]] = field(default_factory=lambda: {s: [] for s in STRATEGIES})

    def joined(self, strategy: str) -> Ledger:
        books = self.parts[strategy]
        return Ledger(
            *(pd.concat([getattr(b, f) for b in books]) for f in ("net", "cost", "position"))
        )


def baseline_rows(candles: Mapping[str, pd.DataFrame], label: LabelSpec) -> pd.DataFrame:
    parts = []
    for symbol, frame in candles.items():
        part = baseline_features(frame).join(sign_label(frame, label.horizon).rename("up"))
        parts.append(part.assign(symbol=symbol))
    return pd.concat(parts).sort_index(kind="stable")


def _predict(model: StackedEnsemble, rows: pd.DataFrame, fold: Fold) -> np.ndarray:
    """Scores of the fold's rows, each with its past in front (the sequence members read it)."""
    scored, keep = with_context(rows, fold.test, model.context)
    return model.predict_proba(scored)[keep]


def _baseline(bl: pd.DataFrame, fold: Fold, seed: int) -> pd.DataFrame:
    train = bl[bl.index.isin(fold.train)].dropna()
    model = fit_baseline(train.loc[:, list(BASELINE_FEATURES)], train["up"], seed)
    test = bl[bl.index.isin(fold.test)]
    return test.assign(p_baseline=model.predict_proba(test))


def _positions(
    frame: pd.DataFrame, close: pd.Series, model: StackedEnsemble, cfg: EvaluationConfig
) -> dict[str, pd.Series]:
    """One symbol's positions over its test candles, per strategy."""
    edge = pd.Series(model.expected_edge(frame["p"].to_numpy()), index=frame.index)
    edge = edge.reindex(close.index)  # a candle without a prediction: NaN, never an entry
    naive = (frame["p_baseline"] > 0.5).astype(float).reindex(close.index).fillna(0.0)
    return {
        "model": pd.Series(
            positions(edge.to_numpy(), cfg.policy, model.tradeable), index=close.index
        ),
        "baseline": naive,
        "buy_and_hold": pd.Series(1.0, index=close.index),
    }


def _trade(
    scored: pd.DataFrame,
    closes: Mapping[str, pd.Series],
    model: StackedEnsemble,
    cfg: EvaluationConfig,
    books: _Books,
) -> dict[str, TradingResult]:
    per: dict[str, dict[str, Ledger]] = {s: {} for s in STRATEGIES}
    span = scored.index
    for symbol, frame in scored.groupby("symbol", sort=False):
        close = closes[str(symbol)]
        close = close[(close.index >= span.min()) & (close.index <= span.max())]
        for strategy, held in _positions(frame, close, model, cfg).items():
            per[strategy][str(symbol)] = ledger(close, held, cfg.fee_rate, cfg.slippage)
    for strategy in STRATEGIES:
        books.parts[strategy].append(combine_ledgers(per[strategy]))
    return {s: combine_results(per[s], cfg.periods_per_year) for s in STRATEGIES}


def _auc(p: np.ndarray, y: np.ndarray) -> float:
    return scores(p, y)["auc"]


def _fold(
    rows: pd.DataFrame,
    bl: pd.DataFrame,
    closes: Mapping[str, pd.Series],
    fold: Fold,
    cfg: EvaluationConfig,
    books: _Books,
) -> tuple[FoldScores, pd.DataFrame, StackedEnsemble]:
    train = rows[rows.index.isin(fold.train)]
    trained = train_ensemble(train, FEATURE_NAMES, cfg.ensemble, cfg.members)
    model = trained.model
    test = rows[rows.index.isin(fold.test)].loc[:, ["symbol", "label"]]
    test = test.assign(p=_predict(model, rows, fold), fold=fold.number + 1)
    base = _baseline(bl, fold, cfg.ensemble.seed).loc[:, ["symbol", "p_baseline"]]
    scored = test.reset_index().merge(base.reset_index(), on=["open_time", "symbol"], how="left")
    scored = scored.set_index("open_time").fillna({"p_baseline": 0.5})
    y = scored["label"].to_numpy()
    out = FoldScores(
        label=f"fold {fold.number + 1}",
        start=fold.test.min(),
        end=fold.test.max(),
        rows=len(scored),
        model=scores(scored["p"].to_numpy(), y),
        baseline_auc=_auc(scored["p_baseline"].to_numpy(), y),
        trading=_trade(scored, closes, model, cfg, books),
        weights=dict(model.weights),
        tradeable=model.tradeable,
    )
    return out, scored, model


def _gain(model: StackedEnsemble) -> pd.Series:
    """Each weighted tree member's gain per feature, as shares of its total, averaged."""
    shares = []
    for name, member in model.members.items():
        inner = getattr(member, "model", None)
        if name == "xgboost" and inner is not None:
            gain = inner.get_booster().get_score(importance_type="gain")
            raw = pd.Series({model.features[int(k[1:])]: v for k, v in gain.items()})
        elif name == "lightgbm" and inner is not None:
            values = inner.booster_.feature_importance(importance_type="gain")
            raw = pd.Series(values, index=list(model.features))
        else:
            continue
        if raw.sum() > 0:
            shares.append(raw / raw.sum())
    return pd.concat(shares, axis=1).fillna(0.0).mean(axis=1) if shares else pd.Series()


def _importance(models: list[StackedEnsemble]) -> pd.Series:
    """The tree members' gain shares, averaged over the folds that kept a tree member."""
    per_fold = [g for g in (_gain(m) for m in models) if not g.empty]
    if not per_fold:
        return pd.Series(dtype="float64")
    mean = pd.concat(per_fold, axis=1).fillna(0.0).mean(axis=1)
    return mean.astype("float64").sort_values(ascending=False)


def _overall(
    folds: list[FoldScores], scored: pd.DataFrame, books: _Books, cfg: EvaluationConfig
) -> FoldScores:
    y = scored["label"].to_numpy()
    return FoldScores(
        label="overall",
        start=folds[0].start,
        end=folds[-1].end,
        rows=len(scored),
        model=scores(scored["p"].to_numpy(), y),
        baseline_auc=_auc(scored["p_baseline"].to_numpy(), y),
        trading={s: _overall_trading(s, folds, books, cfg) for s in STRATEGIES},
    )


def _overall_trading(
    strategy: str, folds: list[FoldScores], books: _Books, cfg: EvaluationConfig
) -> TradingResult:
    """The chained portfolio's returns, risk and costs; trades and turnover are the folds'
    sums and exposure their mean weighted by rows (per symbol, as each fold counts them)."""
    whole = summarise(books.joined(strategy), cfg.periods_per_year)
    results = [f.trading[strategy] for f in folds]
    return replace(
        whole,
        trades=sum(r.trades for r in results),
        turnover=sum(r.turnover for r in results),
        exposure=float(np.average([r.exposure for r in results], weights=[f.rows for f in folds])),
    )


def evaluate_regime(
    name: str, candles: Mapping[str, pd.DataFrame], cfg: EvaluationConfig
) -> RegimeEvaluation:
    """Walk forward over `candles` (one frame per symbol, open_time..volume)."""
    rows = training_rows(candles, cfg.reference_symbol, cfg.label)
    bl = baseline_rows(candles, cfg.label)
    closes = {s: f.set_index("open_time")["close"].astype("float64") for s, f in candles.items()}
    times = pd.DatetimeIndex(rows.index.unique())
    folds = walk_forward_folds(
        times, cfg.folds, pd.Timedelta(cfg.label.horizon), cfg.min_train_fraction
    )
    books, results, parts, models = _Books(), [], [], []
    for fold in folds:
        result, scored, model = _fold(rows, bl, closes, fold, cfg, books)
        results.append(result)
        parts.append(scored)
        models.append(model)
    scored_all = pd.concat(parts)
    equity = pd.DataFrame({s: (1 + books.joined(s).net).cumprod() for s in STRATEGIES})
    return RegimeEvaluation(
        name=name,
        symbols=tuple(candles),
        folds=results,
        overall=_overall(results, scored_all, books, cfg),
        scored=scored_all,
        equity=equity,
        importance=_importance(models),
    )


def goal_met(regime: RegimeEvaluation, min_auc: float = 0.56) -> dict[str, bool]:
    """The issue's bar, out of sample: AUC, a profit and a positive Sharpe after costs, and
    better than the naive baseline in the same run."""
    o = regime.overall
    model, baseline = o.trading["model"], o.trading["baseline"]
    return {
        "auc": o.model["auc"] >= min_auc,
        "net_return": model.net_return > 0,
        "sharpe": model.sharpe > 0,
        "beats_baseline": model.net_return > baseline.net_return
        and o.model["auc"] > o.baseline_auc,
    }


def evaluation_metrics(regimes: list[RegimeEvaluation]) -> dict[str, float]:
    """Every number of the evaluation, flat, as MLflow keys: `<regime>.<fold>.<measure>`."""
    out: dict[str, float] = {}
    for regime in regimes:
        for fold in [*regime.folds, regime.overall]:
            key = f"{regime.name}.{fold.label.replace(' ', '')}"
            out |= {f"{key}.model_{k}": v for k, v in fold.model.items()}
            out[f"{key}.baseline_auc"] = fold.baseline_auc
            out[f"{key}.tradeable"] = float(fold.tradeable)
            out |= {f"{key}.weight_{n}": w for n, w in fold.weights.items()}
            for strategy, result in fold.trading.items():
                out |= {f"{key}.{strategy}_{k}": v for k, v in result.as_dict().items()}
    return out
