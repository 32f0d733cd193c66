"""Training: ledger candles -> labelled rows -> out-of-fold members, calibration and stacking ->
refit on everything up to the cut -> logged run, registered version, fair promotion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from core.candles.timeframe import timeframe_delta
from core.errors import ConfigurationError
from core.features.registry import FEATURE_NAMES, feature_set_version
from core.models.dataset import LabelSpec, training_rows
from core.models.members import LGBM_FIXED, XGB_FIXED, Member
from core.models.promotion import PromotionEvidence, PromotionPolicy
from core.models.training import EnsembleConfig, TrainedEnsemble, train_ensemble
from core.ports import Ledger, ModelRegistry, Promotion, Registered


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    exchange: str
    symbols: Sequence[str]
    timeframe: str
    model_name: str
    reference_symbol: str
    label: LabelSpec
    ensemble: EnsembleConfig
    members: Sequence[Member]
    promotion: PromotionPolicy

    def __post_init__(self) -> None:
        check_same_label(self.label, self.ensemble)


def check_same_label(label: LabelSpec, ensemble: EnsembleConfig) -> None:
    """The embargo and the payoff read the ensemble's horizon and cost, the labels the
    spec's: two that differ would purge the wrong rows without a word."""
    if (label.horizon, label.cost) != (ensemble.horizon, ensemble.cost):
        raise ConfigurationError(
            f"label horizon/cost {label.horizon}/{label.cost} differ from the ensemble's "
            f"{ensemble.horizon}/{ensemble.cost}"
        )


@dataclass(frozen=True, slots=True)
class TrainingReport:
    registered: Registered
    promotion: Promotion
    metrics: dict[str, float]
    ranges: dict[str, tuple[str, str]]
    rows: int
    feature_set_version: str
    weights: dict[str, float]
    notes: dict[str, str]
    tradeable: bool


def load_rows(ledger: Ledger, cfg: TrainingConfig, until: datetime | None) -> pd.DataFrame:
    """Labelled rows from candles up to `until` (inclusive): no label reads past it."""
    candles = {
        s: ledger.candles.load(cfg.exchange, s, cfg.timeframe, until=until) for s in cfg.symbols
    }
    return training_rows(candles, cfg.reference_symbol, cfg.label)


def _params(cfg: TrainingConfig, rows: pd.DataFrame) -> dict[str, Any]:
    seq = cfg.ensemble.sequence
    return {
        "symbols": ",".join(cfg.symbols),
        "timeframe": cfg.timeframe,
        "exchange": cfg.exchange,
        "label_horizon": str(cfg.label.horizon),
        "label_cost": cfg.label.cost,
        "label_kind": "triple_barrier" if cfg.label.barrier else "fixed",
        "members": ",".join(m.name for m in cfg.members),
        "folds": cfg.ensemble.folds,
        "calibration": cfg.ensemble.calibration,
        "seed": cfg.ensemble.seed,
        "n_features": len(FEATURE_NAMES),
        "rows": len(rows),
        **({f"seq_{k}": getattr(seq, k) for k in ("window", "hidden", "epochs")} if seq else {}),
        **{f"xgb_{k}": v for k, v in XGB_FIXED.items()},
        **{f"lgbm_{k}": v for k, v in LGBM_FIXED.items()},
    }


def _tags(
    rows: pd.DataFrame, trained: TrainedEnsemble, cut: pd.Timestamp, fs_version: str
) -> dict[str, str]:
    oof = trained.oof.index
    return {
        "feature_set_version": fs_version,
        "data_range": f"{rows.index.min()} .. {rows.index.max()}",
        "range_out_of_fold": f"{oof.min()} .. {oof.max()}",
        "training_cut": cut.isoformat(),
        "members": ",".join(f"{n}={w:.3f}" for n, w in trained.model.weights.items()),
        "tradeable": str(trained.model.tradeable).lower(),
        **{f"note_{k}": v[:500] for k, v in trained.notes.items()},
    }


def train_and_register(
    ledger: Ledger, registry: ModelRegistry, cfg: TrainingConfig, until: datetime | None = None
) -> TrainingReport:
    """Train on candles up to `until`, register the version as challenger, promote it only if
    it beats the champion on rows neither trained on."""
    rows = load_rows(ledger, cfg, until)
    fs_version = feature_set_version()
    trained = train_ensemble(rows, FEATURE_NAMES, cfg.ensemble, cfg.members, fs_version)
    cut = rows.index.max() + pd.Timedelta(cfg.label.horizon)  # the last close a label read
    example = rows.loc[:, list(FEATURE_NAMES)].tail(50)
    tags = _tags(rows, trained, cut, fs_version)
    registered = registry.register(
        trained.model, cfg.model_name, _params(cfg, rows), trained.metrics, tags, example
    )
    evidence = PromotionEvidence(trained.oof, cut.to_pydatetime(), fs_version)
    promotion = registry.promote_if_better(registered, evidence, cfg.promotion)
    oof = trained.oof.index
    ranges = {
        "training": (str(rows.index.min()), str(rows.index.max())),
        "out_of_fold": (str(oof.min()), str(oof.max())),
    }
    return TrainingReport(
        registered,
        promotion,
        trained.metrics,
        ranges,
        len(rows),
        fs_version,
        dict(trained.model.weights),
        trained.notes,
        trained.model.tradeable,
    )


def label_horizon(timeframe: str, candles: int) -> timedelta:
    return timeframe_delta(timeframe) * candles
