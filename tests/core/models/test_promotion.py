from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from core.models.promotion import PromotionPolicy, fresh_rows, gates, verdict

POLICY = PromotionPolicy(margin=0.001, min_rows=50, max_ece=0.05, max_latency_ms=100)


@pytest.fixture
def oof() -> pd.DataFrame:
    rng = np.random.default_rng(4)
    idx = pd.date_range("2024-05-01", periods=400, freq="1h", tz="UTC")
    p = np.clip(rng.normal(0.4, 0.1, len(idx)), 0.05, 0.95)
    return pd.DataFrame(
        {"p_ensemble": p, "label": (rng.random(len(p)) < p).astype(float)}, index=idx
    )


def passing() -> list:  # type: ignore[type-arg]
    return gates(np.array([0.3, 0.4]), 5.0, ("abc", "abc"), 0.01, POLICY)


def test_gates_when_each_breaks_then_named() -> None:
    failed = gates(np.array([np.nan]), 500.0, ("old", "new"), 0.2, POLICY)
    assert [g.name for g in failed if not g.passed] == [
        "finite_outputs", "latency", "feature_set", "calibration",
    ]  # fmt: skip
    assert all(g.passed for g in passing())


def test_verdict_when_a_gate_fails_then_not_promoted_even_without_champion(
    oof: pd.DataFrame,
) -> None:
    checks = gates(np.array([0.5]), 5.0, ("a", "b"), 0.01, POLICY)
    out = verdict(oof, None, None, checks, POLICY)
    assert not out.promoted
    assert "feature_set" in out.reason


def test_verdict_when_first_version_passes_gates_then_champion(oof: pd.DataFrame) -> None:
    assert verdict(oof, None, None, passing(), POLICY).promoted


def test_verdict_when_champion_is_worse_by_the_margin_then_promoted(oof: pd.DataFrame) -> None:
    worse = np.full(len(oof), 0.5)
    out = verdict(oof, worse, "3", passing(), POLICY)
    assert out.promoted
    assert out.metrics["log_loss_gain"] > POLICY.margin
    assert "beats" in out.reason


def test_verdict_when_gain_below_margin_then_kept(oof: pd.DataFrame) -> None:
    same = oof["p_ensemble"].to_numpy() + 1e-6
    out = verdict(oof, same, "3", passing(), POLICY)
    assert not out.promoted
    assert "does not beat" in out.reason


def test_verdict_when_too_few_rows_after_champion_cut_then_kept(oof: pd.DataFrame) -> None:
    cut = datetime(2024, 5, 17, 12, tzinfo=UTC)  # leaves 11 rows
    fresh = fresh_rows(oof, cut)
    assert fresh.index.min() > pd.Timestamp(cut)
    out = verdict(fresh, np.full(len(fresh), 0.5), "3", passing(), POLICY)
    assert not out.promoted
    assert "training cut" in out.reason


def test_gates_when_few_rows_then_calibration_bound_widens_by_sampling_noise() -> None:
    ece = 0.07  # above the bound on a long window, within noise on a short one
    [*_, short] = gates(np.array([0.4]), 5.0, ("a", "a"), ece, POLICY, rows=1_000)
    [*_, long] = gates(np.array([0.4]), 5.0, ("a", "a"), ece, POLICY, rows=1_000_000)
    assert short.passed
    assert not long.passed
    assert "bound 0.05" in long.detail
