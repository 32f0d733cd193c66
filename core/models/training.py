"""Train the stacked ensemble honestly: every member is scored out of fold (purged walk-forward,
an embargo of the label horizon), calibrated and weighted on those out-of-fold predictions, and
only then refit on every row up to the cut. No I/O here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.errors import FatalError
from core.models.calibration import Calibrator, Method, Stack, fit_stack
from core.models.ensemble import StackedEnsemble, segments_of, with_context
from core.models.members import Fitted, Member, Rows, default_members
from core.models.metrics import scores
from core.models.policy import Payoff, expected_edge, payoff_of, significant_edge
from core.models.purged import Fold, FoldError, walk_forward_folds

if TYPE_CHECKING:  # torch behind it: imported where a sequence member is built
    from core.models.sequence import SequenceConfig


class NotEnoughData(FatalError, ValueError):
    pass


@dataclass(frozen=True, slots=True)
class EnsembleConfig:
    horizon: timedelta  # the label horizon: the embargo between what trains and what is scored
    cost: float  # round-trip fee + slippage, as a log return
    folds: int = 3
    min_train_fraction: float = 0.4
    early_stopping_fraction: float = 0.2  # newest part of each training fold: stops the rounds
    calibration: Method = "platt"
    sequence: SequenceConfig | None = None  # None: the tree members only
    seed: int = 42


@dataclass(frozen=True)
class TrainedEnsemble:
    model: StackedEnsemble
    oof: pd.DataFrame  # the scored rows (features, label, ...), fold, p_<member> (raw), p_ensemble
    metrics: dict[str, float]
    notes: dict[str, str]  # why a member got weight 0, why the policy abstains


def _inputs(frame: pd.DataFrame, features: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    return frame.loc[:, list(features)].to_numpy(dtype=np.float32), segments_of(frame)


def rows_of(frame: pd.DataFrame, features: Sequence[str]) -> Rows:
    return Rows(
        frame.loc[:, list(features)].to_numpy(dtype=np.float32),
        frame["label"].to_numpy(dtype=np.int32),
        segments_of(frame),
    )


def _stopping_split(
    frame: pd.DataFrame, fraction: float, embargo: timedelta
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The newest `fraction` of a training fold stops the rounds; the rest, purged of labels
    that reach into it, fits."""
    times = frame.index.unique().sort_values()
    start = times[int(len(times) * (1 - fraction))]
    fit = frame[frame.index + pd.Timedelta(embargo) < start]
    stop = frame[frame.index >= start]
    if fit["label"].nunique() < 2 or stop["label"].nunique() < 2:
        raise NotEnoughData("a training fold's fit or early-stopping part has a single class")
    return fit, stop


def _folds(rows: pd.DataFrame, cfg: EnsembleConfig) -> list[Fold]:
    times = pd.DatetimeIndex(rows.index.unique().sort_values())
    try:
        return walk_forward_folds(
            times, cfg.folds, pd.Timedelta(cfg.horizon), cfg.min_train_fraction
        )
    except FoldError as exc:
        raise NotEnoughData(str(exc)) from exc


def out_of_fold(
    rows: pd.DataFrame, features: Sequence[str], members: Sequence[Member], cfg: EnsembleConfig
) -> tuple[pd.DataFrame, dict[str, list[int]], dict[str, Fitted]]:
    """Each member's raw probability on every fold's test rows, from a fit on that fold's past
    only; the rounds each fold chose; and the last fold's fits (their grid choice is reused)."""
    parts, rounds, last = [], {m.name: [] for m in members}, {}
    for fold in _folds(rows, cfg):
        train = rows[rows.index.isin(fold.train)]
        test = rows[rows.index.isin(fold.test)]
        fit, stop = _stopping_split(train, cfg.early_stopping_fraction, cfg.horizon)
        out = test.copy()
        out["fold"] = fold.number
        for member in members:
            fitted = member.fit(rows_of(fit, features), rows_of(stop, features), cfg.seed)
            # A sequence member reads each test row's past: the fold with its context in front.
            scored, keep = with_context(rows, fold.test, fitted.context)
            out[f"p_{member.name}"] = fitted.predict(*_inputs(scored, features))[keep]
            rounds[member.name].append(fitted.rounds)
            last[member.name] = fitted
        parts.append(out)
    return pd.concat(parts), rounds, last


def _tradeable(
    oof: pd.DataFrame, payoff: Payoff, horizon: timedelta
) -> tuple[bool, str, np.ndarray]:
    """Was the edge real out of fold? The net return of every entry the policy would have
    made, one per horizon per symbol (overlapping trades would count one move many times)."""
    outcomes = []
    for _, part in oof.groupby("symbol", sort=False):
        edge = np.asarray(expected_edge(part["p_ensemble"].to_numpy(), payoff))
        net = part["forward_return"].to_numpy() - payoff.cost
        times = part.index
        free_at = times[0]
        for i in np.flatnonzero(edge > 0):
            if times[i] >= free_at:  # by time: a missing row never shortens the horizon
                outcomes.append(net[i])
                free_at = times[i] + pd.Timedelta(horizon)
    trades = np.asarray(outcomes)
    ok = significant_edge(trades)
    mean = float(trades.mean()) if len(trades) else 0.0
    why = f"{len(trades)} out-of-fold entries, mean net log return {mean:+.5f} per trade"
    return ok, why + (": significant" if ok else ": not significant, the policy abstains"), trades


def _metrics(
    oof: pd.DataFrame, calibrated: dict[str, np.ndarray], stack: Stack
) -> dict[str, float]:
    y = oof["label"].to_numpy()
    out: dict[str, float] = {}
    for name, p in calibrated.items():
        out |= {f"{name}_oof_{k}": v for k, v in scores(p, y).items()}
        out[f"{name}_weight"] = float(stack.weights.get(name, 0.0))
    out |= {f"ensemble_oof_{k}": v for k, v in scores(oof["p_ensemble"].to_numpy(), y).items()}
    for fold, part in oof.groupby("fold"):
        fold_scores = scores(part["p_ensemble"].to_numpy(), part["label"].to_numpy())
        out |= {f"fold{fold}_ensemble_{k}": v for k, v in fold_scores.items()}
    return out


def _payoff(rows: pd.DataFrame, cost: float) -> Payoff:
    return payoff_of(rows["forward_return"].to_numpy(), rows["label"].to_numpy(), cost)


def train_ensemble(
    rows: pd.DataFrame,
    features: Sequence[str],
    cfg: EnsembleConfig,
    members: Sequence[Member] | None = None,
    feature_set_version: str = "",
) -> TrainedEnsemble:
    """Out-of-fold scores -> calibrators -> stack weights -> significance of the edge -> every
    weighted member refit on all `rows` for the median rounds its folds chose."""
    members = list(members if members is not None else default_members(cfg.sequence))
    oof, rounds, last = out_of_fold(rows, features, members, cfg)
    y = oof["label"].to_numpy()
    calibrators = {
        m.name: Calibrator.fit(oof[f"p_{m.name}"].to_numpy(), y, cfg.calibration) for m in members
    }
    calibrated = {n: c(oof[f"p_{n}"].to_numpy()) for n, c in calibrators.items()}
    stack = fit_stack(calibrated, y)
    oof["p_ensemble"] = stack.combine(calibrated)
    # The significance test judges the out-of-fold trades with a payoff measured before them
    # (their own returns would flatter it); the served model's payoff uses every row.
    earlier = rows[rows.index < oof.index.min()]
    tradeable, why, trades = _tradeable(oof, _payoff(earlier, cfg.cost), cfg.horizon)
    metrics = _metrics(oof, calibrated, stack) | {"tradeable": float(tradeable)}
    everything = rows_of(rows, features)
    final = {
        m.name: m.refit(everything, last[m.name], int(np.median(rounds[m.name])), cfg.seed)
        for m in members
        if stack.weights.get(m.name, 0.0) > 0
    }
    model = StackedEnsemble(
        features=tuple(features),
        members=final,
        calibrators={n: calibrators[n] for n in final},
        stack=stack,
        payoff=_payoff(rows, cfg.cost),
        tradeable=tradeable,
        context=max((f.context for f in final.values()), default=0),
        label={"horizon": str(cfg.horizon), "cost": f"{cfg.cost:.6f}"},
        feature_set_version=feature_set_version,
        quality={
            "oof_auc": metrics["ensemble_oof_auc"],
            "oof_brier": metrics["ensemble_oof_brier"],
            "oof_entries": float(len(trades)),
            "oof_mean_net_return": float(trades.mean()) if len(trades) else 0.0,
        },
    )
    notes = dict(stack.notes) | {"policy": why}
    return TrainedEnsemble(model, oof, metrics, notes)
