"""Every feature, on real candles: no lookahead, declared warm-up, no inf, incremental = full."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.features.build import INCREMENTAL_WINDOW, MissingReference, build_features
from core.features.registry import (
    FEATURE_NAMES,
    FEATURES,
    GROUPS,
    MAX_LOOKBACK,
    feature_set_version,
)

WINDOW = 1500  # real candles used by the lookahead checks


@pytest.fixture(scope="module")
def btc(btc_1h: pd.DataFrame) -> pd.DataFrame:
    return btc_1h.head(WINDOW).reset_index(drop=True)


@pytest.fixture(scope="module")
def eth(eth_1h: pd.DataFrame) -> pd.DataFrame:
    return eth_1h.head(WINDOW).reset_index(drop=True)


@pytest.fixture(scope="module")
def full(eth: pd.DataFrame, btc: pd.DataFrame) -> pd.DataFrame:
    return build_features(eth, btc)


def test_registry_when_listed_then_about_86_unique_features_in_eight_groups() -> None:
    assert 80 <= len(FEATURE_NAMES) <= 100
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert set(GROUPS) == {
        "trend",
        "momentum",
        "volatility",
        "volume",
        "microstructure",
        "time",
        "regime",
        "cross_asset",
    }
    assert all(f.definition and f.reference and f.lookback >= 1 for f in FEATURES)


def test_build_when_real_candles_then_columns_match_registry_and_no_inf(full: pd.DataFrame) -> None:
    assert tuple(full.columns) == FEATURE_NAMES
    values = full.to_numpy()
    assert not np.isinf(values).any()


def test_build_when_real_candles_then_nan_exactly_in_declared_warmup(full: pd.DataFrame) -> None:
    for spec in FEATURES:
        column = full[spec.name]
        assert column.iloc[: spec.lookback - 1].isna().all(), spec.name
        assert column.iloc[MAX_LOOKBACK:].notna().all(), spec.name


def _row(eth: pd.DataFrame, btc: pd.DataFrame, t: int) -> np.ndarray:
    return build_features(eth.iloc[: t + 1], btc.iloc[: t + 1]).iloc[t].to_numpy()


@pytest.mark.parametrize("t", list(range(0, WINDOW, 97)))
def test_features_when_truncated_after_t_then_row_t_is_identical(
    eth: pd.DataFrame, btc: pd.DataFrame, full: pd.DataFrame, t: int
) -> None:
    np.testing.assert_array_equal(_row(eth, btc, t), full.iloc[t].to_numpy())


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(t=st.integers(min_value=0, max_value=WINDOW - 1))
def test_features_property_when_any_future_removed_then_row_t_unchanged(
    eth: pd.DataFrame, btc: pd.DataFrame, full: pd.DataFrame, t: int
) -> None:
    """Both the symbol's and the reference's candles after t are removed."""
    np.testing.assert_array_equal(_row(eth, btc, t), full.iloc[t].to_numpy())


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(t=st.integers(min_value=MAX_LOOKBACK, max_value=WINDOW - 2), scale=st.floats(0.2, 5.0))
def test_features_property_when_future_candles_changed_then_past_rows_unchanged(
    eth: pd.DataFrame, btc: pd.DataFrame, full: pd.DataFrame, t: int, scale: float
) -> None:
    shocked_eth, shocked_btc = eth.copy(), btc.copy()
    for frame in (shocked_eth, shocked_btc):
        frame.loc[t + 1 :, ["open", "high", "low", "close"]] *= scale
        frame.loc[t + 1 :, "volume"] *= scale * 3
    past = build_features(shocked_eth, shocked_btc).iloc[: t + 1]
    pd.testing.assert_frame_equal(past, full.iloc[: t + 1])


def test_incremental_when_newest_row_from_bounded_window_then_equals_full_history(
    eth_1h: pd.DataFrame, btc_1h: pd.DataFrame
) -> None:
    full = build_features(eth_1h, btc_1h)
    for end in (INCREMENTAL_WINDOW + 10, 3000, len(eth_1h)):
        window = slice(end - INCREMENTAL_WINDOW, end)
        inc = build_features(eth_1h.iloc[window], btc_1h.iloc[window]).iloc[-1]
        np.testing.assert_allclose(
            inc.to_numpy(),
            full.iloc[end - 1].to_numpy(),
            rtol=1e-9,
            atol=1e-12,
            err_msg=f"row {end - 1}",
        )


def test_build_when_no_reference_then_clear_error(eth: pd.DataFrame) -> None:
    with pytest.raises(MissingReference, match="BTC"):
        build_features(eth, pd.DataFrame())


def test_feature_set_version_when_computed_twice_then_stable_hex() -> None:
    assert feature_set_version() == feature_set_version()
    assert len(feature_set_version()) == 16


def test_build_features_when_built_then_one_float_block_that_reading_it_never_copies(
    full: pd.DataFrame,
) -> None:
    # The decision batch reads a long backtest's features as an array; a copy would hold a
    # symbol's features twice (52 MB for 72,000 5m candles).
    first, second = full.to_numpy(dtype="float64"), full.to_numpy(dtype="float64")
    assert np.shares_memory(first, second)
    assert first.shape == (len(full), len(FEATURE_NAMES))


def test_cross_asset_when_the_reference_lacks_a_candle_then_as_if_its_close_were_unknown(
    eth: pd.DataFrame, btc: pd.DataFrame
) -> None:
    # A reference of other candles is aligned on the symbol's open times (its gaps are NaN):
    # the same features as the reference of the very same candles with that close unknown.
    cross = [f.name for f in FEATURES if f.group == "cross_asset"]
    gap = 700
    unknown = btc.copy()
    unknown.loc[gap, "close"] = np.nan
    aligned = build_features(eth, unknown).loc[:, cross]
    gapped = build_features(eth, btc.drop(index=gap)).loc[:, cross]
    pd.testing.assert_frame_equal(gapped, aligned)
    assert np.isnan(aligned["ref_ret_1"].iloc[gap])
