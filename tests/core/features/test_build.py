from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.features.build import build_features
from core.features.registry import FEATURE_NAMES, FEATURES, MAX_LOOKBACK, feature_set_version

WINDOW = 1200  # real candles used by the lookahead checks


@pytest.fixture(scope="module")
def candles(btc_1h: pd.DataFrame) -> pd.DataFrame:
    return btc_1h.head(WINDOW).reset_index(drop=True)


@pytest.fixture(scope="module")
def full(candles: pd.DataFrame) -> pd.DataFrame:
    return build_features(candles)


def test_registry_when_listed_then_at_least_20_unique_features_in_several_groups() -> None:
    assert len(FEATURE_NAMES) >= 20
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert {f.group for f in FEATURES} >= {"trend", "momentum", "volatility", "volume", "time"}


def test_build_when_real_candles_then_columns_match_registry_and_no_inf(full: pd.DataFrame) -> None:
    assert tuple(full.columns) == FEATURE_NAMES
    assert np.isfinite(full.to_numpy()[~np.isnan(full.to_numpy())]).all()
    # After the declared warm-up every feature is defined.
    assert not full.iloc[MAX_LOOKBACK:].isna().any().any()


def test_build_when_computed_then_no_label_or_future_column(full: pd.DataFrame) -> None:
    assert "label" not in full.columns


def _assert_prefix_equal(candles: pd.DataFrame, full: pd.DataFrame, t: int) -> None:
    truncated = build_features(candles.iloc[: t + 1])
    np.testing.assert_allclose(
        truncated.iloc[t].to_numpy(),
        full.iloc[t].to_numpy(),
        rtol=0,
        atol=0,
        equal_nan=True,
        err_msg=f"feature at row {t} changed when later candles were removed",
    )


@pytest.mark.parametrize("t", list(range(0, WINDOW, 37)))
def test_features_when_truncated_after_t_then_row_t_is_identical(
    candles: pd.DataFrame, full: pd.DataFrame, t: int
) -> None:
    _assert_prefix_equal(candles, full, t)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(t=st.integers(min_value=0, max_value=WINDOW - 1))
def test_features_property_when_any_future_removed_then_past_rows_unchanged(
    candles: pd.DataFrame, full: pd.DataFrame, t: int
) -> None:
    _assert_prefix_equal(candles, full, t)


def test_features_when_future_candles_changed_then_past_rows_unchanged(
    candles: pd.DataFrame, full: pd.DataFrame
) -> None:
    t = 600
    shocked = candles.copy()
    shocked.loc[t + 1 :, ["open", "high", "low", "close"]] *= 3.0
    shocked.loc[t + 1 :, "volume"] *= 10.0
    pd.testing.assert_frame_equal(build_features(shocked).iloc[: t + 1], full.iloc[: t + 1])


def test_feature_set_version_when_computed_twice_then_stable_hex() -> None:
    assert feature_set_version() == feature_set_version()
    assert len(feature_set_version()) == 16
