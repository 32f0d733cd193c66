"""When a challenger may replace the champion: only on rows neither model trained on, only by a
margin, and only through the sanity gates. Pure: the registry brings the numbers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from core.models.metrics import CALIBRATION_BINS, scores


@dataclass(frozen=True, slots=True)
class PromotionPolicy:
    margin: float = 0.001  # log-loss the challenger must win by
    min_rows: int = 200  # fresh rows needed before a comparison means anything
    max_ece: float = 0.05  # expected calibration error, out of fold
    max_latency_ms: float = 250.0  # one row through the whole served model


@dataclass(frozen=True)
class PromotionEvidence:
    """The challenger's out-of-fold rows: features, `label`, `symbol` and its probability
    `p_ensemble` from fits that never saw them; `training_cut` is the last candle its labels
    read."""

    oof: pd.DataFrame
    training_cut: datetime
    feature_set_version: str


@dataclass(frozen=True, slots=True)
class Gate:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Verdict:
    promoted: bool
    reason: str
    metrics: dict[str, float]


def gates(
    probabilities: np.ndarray,
    latency_ms: float,
    feature_set: tuple[str, str],  # (the version's, this code's)
    ece: float,
    policy: PromotionPolicy,
    rows: int = 0,
) -> list[Gate]:
    """The sanity gates. The calibration bound widens by the sampling noise of a bin's
    observed rate (10 equal-count bins of `rows` out-of-fold rows): a perfectly calibrated
    model on a short window still shows a few points of error."""
    finite = bool(
        np.isfinite(probabilities).all() and ((probabilities >= 0) & (probabilities <= 1)).all()
    )
    fs, code_fs = feature_set
    budget = policy.max_latency_ms
    ece_bound = policy.max_ece + (math.sqrt(0.25 * CALIBRATION_BINS / rows) if rows else 0.0)
    return [
        Gate("finite_outputs", finite, "every probability finite and in [0, 1]"),
        Gate("latency", latency_ms <= budget, f"{latency_ms:.1f} ms per row (budget {budget:.0f})"),
        Gate("feature_set", fs == code_fs, f"trained on {fs}, code computes {code_fs}"),
        Gate("calibration", ece <= ece_bound, f"out-of-fold ECE {ece:.4f} (bound {ece_bound:.4f})"),
    ]


def fresh_rows(oof: pd.DataFrame, champion_cut: datetime | None) -> pd.DataFrame:
    """The challenger's out-of-fold rows the champion never trained on either."""
    if champion_cut is None:
        return oof
    return oof[oof.index > pd.Timestamp(champion_cut)]


def verdict(
    fresh: pd.DataFrame,
    champion_p: np.ndarray | None,
    champion_version: str | None,
    checks: Sequence[Gate],
    policy: PromotionPolicy,
) -> Verdict:
    failed = [g for g in checks if not g.passed]
    if failed:
        return Verdict(
            False, "gate(s) failed: " + "; ".join(f"{g.name}: {g.detail}" for g in failed), {}
        )
    if champion_version is None or champion_p is None:
        return Verdict(True, "first version to pass the gates: champion", {})
    if len(fresh) < policy.min_rows or fresh["label"].nunique() < 2:
        return Verdict(
            False,
            f"only {len(fresh)} rows after champion v{champion_version}'s training cut "
            f"(need {policy.min_rows}): kept the champion",
            {"fresh_rows": float(len(fresh))},
        )
    y = fresh["label"].to_numpy()
    new, old = scores(fresh["p_ensemble"].to_numpy(), y), scores(champion_p, y)
    gain = old["log_loss"] - new["log_loss"]
    promoted = gain >= policy.margin
    numbers = {
        "fresh_rows": float(len(fresh)),
        "challenger_log_loss": new["log_loss"],
        "champion_log_loss": old["log_loss"],
        "challenger_auc": new["auc"],
        "champion_auc": old["auc"],
        "log_loss_gain": gain,
    }
    word = "beats" if promoted else "does not beat"
    reason = (
        f"log-loss {new['log_loss']:.5f} vs champion v{champion_version} {old['log_loss']:.5f} "
        f"on {len(fresh)} rows neither trained on: {word} it by the margin {policy.margin} "
        f"(gain {gain:+.5f}; AUC {new['auc']:.4f} vs {old['auc']:.4f})"
    )
    return Verdict(promoted, reason, numbers)
