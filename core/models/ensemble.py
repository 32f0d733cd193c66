"""The served model: calibrated members stacked by out-of-fold weights, with what the decision
policy needs to turn a probability into an expected edge. The one object registered in MLflow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.models.calibration import Calibrator, Stack
from core.models.members import Fitted
from core.models.policy import Payoff, expected_edge


class FeatureRowsError(ValueError):
    pass


def segments_of(frame: pd.DataFrame) -> np.ndarray:
    """Which symbol each row belongs to, as integer codes: from a `symbol` index level or
    column; one segment when neither is there (rows of one symbol)."""
    index = frame.index
    if isinstance(index, pd.MultiIndex) and "symbol" in (index.names or ()):
        # The level's codes, numbered by first appearance: its values' factorize, cheaper.
        return np.asarray(pd.factorize(index.codes[index.names.index("symbol")])[0])
    if "symbol" in frame.columns:
        return np.asarray(pd.factorize(frame["symbol"])[0])
    return np.zeros(len(frame), dtype=np.int64)


def with_context(
    frame: pd.DataFrame, times: pd.Index, context: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows at `times` with the `context` rows of each symbol before its first one (what a
    sequence member reads), in the frame's order, and which of them are at `times`."""
    wanted = np.asarray(frame.index.isin(times))
    if context == 0 or not wanted.any():
        return frame[wanted], wanted[wanted]
    segments = segments_of(frame)
    keep = wanted.copy()
    for segment in np.unique(segments[wanted]):
        mine = np.flatnonzero(segments == segment)
        first = int(np.argmax(wanted[mine]))
        keep[mine[max(0, first - context) : first]] = True
    return frame[keep], wanted[keep]


@dataclass
class StackedEnsemble:
    """P(label = 1) for each row; rows of a symbol must be in time order, and a sequence member
    reads the `context` rows before each one (fewer at the start of a frame: the window is
    padded with the first row)."""

    features: tuple[str, ...]
    members: dict[str, Fitted]  # only members with a weight, refit on all rows to the cut
    calibrators: dict[str, Calibrator]
    stack: Stack
    payoff: Payoff
    tradeable: bool  # the out-of-fold edge was significant: otherwise the policy abstains
    context: int = 0
    label: Mapping[str, str] = field(default_factory=dict)
    feature_set_version: str = ""  # the feature code's version the model was trained on
    # How it did out of fold (AUC, Brier, the policy's entries and their mean net return): an
    # LLM agent's brief says how far to trust it. Empty for models trained before it was kept.
    quality: Mapping[str, float] = field(default_factory=dict)

    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        if tuple(frame.columns) != self.features:  # else nothing can be missing: 91 lookups saved
            missing = [f for f in self.features if f not in frame.columns]
            if missing:
                raise FeatureRowsError(f"{len(missing)} feature(s) missing: {missing[:10]}")
            frame = frame.loc[:, list(self.features)]
        x = frame.to_numpy(dtype=np.float32)
        if not np.isfinite(x).all():
            bad = [
                f for f, ok in zip(self.features, np.isfinite(x).all(axis=0), strict=True) if not ok
            ]
            raise FeatureRowsError(f"non-finite values in feature(s): {bad[:10]}")
        return x

    def member_proba(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Each member's calibrated probability."""
        x, segments = self._matrix(frame), segments_of(frame)
        return {
            name: self.calibrators[name](member.predict(x, segments))
            for name, member in self.members.items()
        }

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        if frame.empty:
            return np.empty(0, dtype=np.float64)
        calibrated = self.member_proba(frame)
        if not calibrated:  # no member earned a weight: the base rate, every row
            return np.full(len(frame), float(1 / (1 + np.exp(-self.stack.intercept))))
        return self.stack.combine(calibrated)

    def expected_edge(self, p: np.ndarray) -> np.ndarray:
        return np.asarray(expected_edge(p, self.payoff), dtype=np.float64)

    @property
    def weights(self) -> Mapping[str, float]:
        return self.stack.weights


@dataclass(frozen=True)
class EnsembleModel:
    """A stacked ensemble behind the Model port, unregistered (a walk-forward fold's model, a
    bench's): the port's four reads go straight to the ensemble."""

    name: str
    version: str
    feature_set_version: str
    ensemble: StackedEnsemble

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.ensemble.predict_proba(features), dtype=np.float64)

    @property
    def tradeable(self) -> bool:
        return self.ensemble.tradeable

    @property
    def context(self) -> int:
        return self.ensemble.context

    @property
    def quality(self) -> Mapping[str, float]:
        return quality_of(self.ensemble)

    def edge(self, probabilities: np.ndarray) -> np.ndarray:
        return self.ensemble.expected_edge(probabilities)


def quality_of(ensemble: StackedEnsemble) -> Mapping[str, float]:
    """Its out-of-fold quality; a model pickled before the field existed has none."""
    return getattr(ensemble, "quality", None) or {}
