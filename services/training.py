"""Training: ledger candles -> dataset -> ensemble -> logged run, registered version, promotion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from core.candles.timeframe import timeframe_delta
from core.features.registry import FEATURE_NAMES, feature_set_version
from core.models.dataset import training_rows
from core.models.training import LGBM_PARAMS, XGB_PARAMS, fit_ensemble, split_metrics, time_split
from core.ports import Ledger, ModelRegistry, Promotion, Registered


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    exchange: str
    symbols: Sequence[str]
    timeframe: str
    model_name: str
    reference_symbol: str
    label_horizon: int
    fee_threshold: float
    validation_fraction: float
    test_fraction: float
    seed: int


@dataclass(frozen=True, slots=True)
class TrainingReport:
    registered: Registered
    promotion: Promotion
    metrics: dict[str, float]
    ranges: dict[str, tuple[str, str]]
    rows: int
    feature_set_version: str


def train_and_register(
    ledger: Ledger, registry: ModelRegistry, cfg: TrainingConfig, until: datetime | None = None
) -> TrainingReport:
    """Train on candles up to `until` (inclusive): labels never reach past it."""
    candles = {
        s: ledger.candles.load(cfg.exchange, s, cfg.timeframe, until=until) for s in cfg.symbols
    }
    dataset = training_rows(candles, cfg.reference_symbol, cfg.label_horizon, cfg.fee_threshold)
    gap = pd.Timedelta(timeframe_delta(cfg.timeframe) * cfg.label_horizon)
    splits = time_split(dataset, cfg.validation_fraction, cfg.test_fraction, gap)
    model = fit_ensemble(splits.train, FEATURE_NAMES, cfg.seed)
    metrics = split_metrics(model, splits)
    fs_version = feature_set_version()
    ranges = splits.ranges()
    data_range = f"{dataset.index.min()} .. {dataset.index.max()}"
    params = {
        "symbols": ",".join(cfg.symbols),
        "timeframe": cfg.timeframe,
        "exchange": cfg.exchange,
        "label_horizon": cfg.label_horizon,
        "fee_threshold": cfg.fee_threshold,
        "seed": cfg.seed,
        "n_features": len(FEATURE_NAMES),
        "rows": len(dataset),
        "split_gap": str(gap),
        **{f"xgb_{k}": v for k, v in XGB_PARAMS.items()},
        **{f"lgbm_{k}": v for k, v in LGBM_PARAMS.items()},
    }
    tags = {
        "feature_set_version": fs_version,
        "data_range": data_range,
        **{f"range_{name}": f"{a} .. {b}" for name, (a, b) in ranges.items()},
    }
    registered = registry.register(
        model,
        cfg.model_name,
        params,
        metrics,
        tags,
        splits.validation.loc[:, list(FEATURE_NAMES)].head(50),
    )
    promotion = registry.promote_if_better(registered, splits.validation, FEATURE_NAMES)
    return TrainingReport(registered, promotion, metrics, ranges, len(dataset), fs_version)
