from __future__ import annotations

import numpy as np
import pytest

from core.models.calibration import Calibrator, fit_stack, logit
from core.models.metrics import calibration_error, scores


@pytest.fixture(scope="module")
def truth() -> tuple[np.ndarray, np.ndarray]:
    """True probabilities near a 35 % base rate and labels drawn from them."""
    rng = np.random.default_rng(11)
    p = np.clip(rng.normal(0.35, 0.08, 20_000), 0.01, 0.99)
    return p, (rng.random(len(p)) < p).astype(float)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibrator_when_probabilities_are_shifted_then_error_shrinks(
    truth: tuple[np.ndarray, np.ndarray], method: str
) -> None:
    p, y = truth
    raw = np.clip(p + 0.15, 0, 1)  # centred on 0.5 like an uncalibrated classifier
    cal = Calibrator.fit(raw, y, method)  # type: ignore[arg-type]
    assert calibration_error(raw, y) > 0.1
    assert calibration_error(cal(raw), y) < 0.02


def test_calibrator_when_platt_then_monotone_and_keeps_ranking(
    truth: tuple[np.ndarray, np.ndarray],
) -> None:
    p, y = truth
    cal = Calibrator.fit(p, y)
    grid = np.linspace(0.01, 0.99, 99)
    assert np.all(np.diff(cal(grid)) > 0)
    assert scores(cal(p), y)["auc"] == pytest.approx(scores(p, y)["auc"])


def test_fit_stack_when_one_member_is_noise_and_one_anti_then_both_weight_zero(
    truth: tuple[np.ndarray, np.ndarray],
) -> None:
    p, y = truth
    rng = np.random.default_rng(5)
    members = {
        "good": p,
        "noise": np.full(len(p), 0.35) + rng.normal(0, 0.001, len(p)),
        "anti": 1 - p,
    }
    stack = fit_stack(members, y)
    assert stack.weights["good"] > 0.5
    assert stack.weights["noise"] == 0.0
    assert stack.weights["anti"] == 0.0
    assert "chance" in stack.notes["anti"]
    assert "noise" in stack.notes


def test_fit_stack_when_two_members_carry_different_signals_then_both_weighted() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 20_000), rng.normal(0, 1, 20_000)
    y = (rng.random(20_000) < 1 / (1 + np.exp(-(a + b)))).astype(float)
    stack = fit_stack({"a": 1 / (1 + np.exp(-a)), "b": 1 / (1 + np.exp(-b))}, y)
    assert stack.weights["a"] == pytest.approx(1.0, abs=0.1)
    assert stack.weights["b"] == pytest.approx(1.0, abs=0.1)
    both = stack.combine({"a": 1 / (1 + np.exp(-a)), "b": 1 / (1 + np.exp(-b))})
    np.testing.assert_allclose(logit(both), a + b + stack.intercept, atol=0.3)


def test_fit_stack_when_no_member_helps_then_base_rate(
    truth: tuple[np.ndarray, np.ndarray],
) -> None:
    _, y = truth
    flat = np.full(len(y), 0.4)
    stack = fit_stack({"flat": flat}, y)
    assert stack.weights == {"flat": 0.0}
    out = stack.combine({"flat": flat})
    assert out[0] == pytest.approx(y.mean())


def test_scores_when_single_class_then_auc_nan_and_rest_finite() -> None:
    out = scores(np.full(10, 0.2), np.zeros(10))
    assert np.isnan(out["auc"])
    assert np.isfinite(out["log_loss"])
    assert out["base_rate"] == 0.0
