from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from core.models.baseline import (
    BASELINE_FEATURES,
    BASELINE_PARAMS,
    BaselineError,
    baseline_features,
    fit_baseline,
    sign_label,
)

WARM_UP = 40  # ADX(14) needs 2 x 14 - 1 candles, MACD 33: well inside this


@pytest.fixture(scope="module")
def candles(btc_1h: pd.DataFrame) -> pd.DataFrame:
    return btc_1h.head(1500).reset_index(drop=True)


@pytest.fixture(scope="module")
def features(candles: pd.DataFrame) -> pd.DataFrame:
    return baseline_features(candles)


def synthetic(closes: list[float]) -> pd.DataFrame:
    c = np.asarray(closes, dtype=float)
    return pd.DataFrame(
        {
            "open_time": pd.date_range("2024-01-01", periods=len(c), freq="h", tz="UTC"),
            "open": c,
            "high": c * 1.01,
            "low": c * 0.99,
            "close": c,
            "volume": 1.0,
        }
    )


def test_baseline_features_when_real_candles_then_named_indexed_and_finite_after_warm_up(
    candles: pd.DataFrame, features: pd.DataFrame
) -> None:
    assert tuple(features.columns) == BASELINE_FEATURES
    assert features.index.equals(pd.DatetimeIndex(candles["open_time"], name="open_time"))
    assert np.isfinite(features.iloc[WARM_UP:].to_numpy()).all()
    assert features.iloc[0].isna().all()
    assert features["rsi_14"].between(0, 1).iloc[WARM_UP:].all()


@pytest.mark.parametrize("cut", [60, 333, 900, 1499])
def test_baseline_features_when_candles_after_t_dropped_then_rows_up_to_t_unchanged(
    candles: pd.DataFrame, features: pd.DataFrame, cut: int
) -> None:
    truncated = baseline_features(candles.head(cut))
    np.testing.assert_array_equal(truncated.to_numpy(), features.iloc[:cut].to_numpy())


def test_baseline_features_when_prices_scaled_then_features_unchanged(
    candles: pd.DataFrame, features: pd.DataFrame
) -> None:
    scaled = candles.assign(**{k: candles[k] * 1000 for k in ("open", "high", "low", "close")})
    np.testing.assert_allclose(
        baseline_features(scaled).to_numpy(), features.to_numpy(), rtol=1e-6, atol=1e-9
    )


def test_baseline_features_when_column_missing_then_baseline_error(candles: pd.DataFrame) -> None:
    with pytest.raises(BaselineError, match="high"):
        baseline_features(candles.drop(columns=["high"]))


def test_sign_label_when_hand_closes_then_up_is_one_flat_is_zero_end_is_nan() -> None:
    label = sign_label(synthetic([1, 2, 1, 1, 3]), horizon=1)
    np.testing.assert_array_equal(label.to_numpy(), [1, 0, 0, 1, np.nan])
    two = sign_label(synthetic([1, 2, 1, 1, 3]), horizon=2)
    np.testing.assert_array_equal(two.to_numpy(), [0, 0, 1, np.nan, np.nan])


def test_sign_label_when_real_candles_then_matches_close_comparison(
    candles: pd.DataFrame,
) -> None:
    label = sign_label(candles, horizon=4)
    close = candles["close"].to_numpy()
    assert label.iloc[-4:].isna().all()
    np.testing.assert_array_equal(label.to_numpy()[:-4], (close[4:] > close[:-4]).astype(float))
    assert 0.3 < label.mean() < 0.7  # both classes present in real data


def test_sign_label_when_horizon_is_a_duration_then_same_as_rows_without_gaps(
    candles: pd.DataFrame,
) -> None:
    by_rows = sign_label(candles, horizon=4)
    pd.testing.assert_series_equal(sign_label(candles, horizon=timedelta(hours=4)), by_rows)


def test_sign_label_when_duration_spans_a_gap_then_nan_not_a_later_close() -> None:
    candles = synthetic([1, 2, 3, 4, 5]).drop(index=2).reset_index(drop=True)
    label = sign_label(candles, horizon=timedelta(hours=1))
    np.testing.assert_array_equal(label.to_numpy(), [1, np.nan, 1, np.nan])


@pytest.mark.parametrize("horizon", [0, timedelta(0)])
def test_sign_label_when_horizon_not_positive_then_baseline_error(
    candles: pd.DataFrame, horizon: int | timedelta
) -> None:
    with pytest.raises(BaselineError, match="horizon"):
        sign_label(candles, horizon=horizon)


def test_fit_baseline_when_same_seed_then_same_finite_probabilities(
    candles: pd.DataFrame, features: pd.DataFrame
) -> None:
    label = sign_label(candles, horizon=4)
    train, scored = features.iloc[:1000], features.iloc[1000:]
    a = fit_baseline(train, label, seed=3).predict_proba(scored)
    b = fit_baseline(train, label, seed=3).predict_proba(scored)
    assert a.shape == (len(scored),)
    assert np.isfinite(a).all()
    assert ((a > 0) & (a < 1)).all()
    np.testing.assert_array_equal(a, b)


def test_fit_baseline_when_seed_differs_then_row_subsampling_differs(
    candles: pd.DataFrame, features: pd.DataFrame
) -> None:
    label = sign_label(candles, horizon=4)
    a = fit_baseline(features, label, seed=1).predict_proba(features)
    b = fit_baseline(features, label, seed=2).predict_proba(features)
    assert not np.array_equal(a, b)


def test_fit_baseline_when_pooled_rows_repeat_times_then_aligned_row_for_row(
    candles: pd.DataFrame, features: pd.DataFrame
) -> None:
    label = sign_label(candles, horizon=4)
    flipped = 1.0 - label  # a second "symbol" whose labels differ at the same times
    pooled, labels = pd.concat([features, features]), pd.concat([label, flipped])
    model = fit_baseline(pooled, labels, seed=3)
    known = pooled.notna().all(axis=1).to_numpy() & labels.notna().to_numpy()
    direct = xgb.XGBClassifier(**BASELINE_PARAMS, random_state=3)
    direct.fit(pooled.to_numpy(np.float32)[known], labels.to_numpy()[known].astype(np.int32))
    np.testing.assert_array_equal(
        model.predict_proba(pooled), direct.predict_proba(pooled.to_numpy(np.float32))[:, 1]
    )
    with pytest.raises(BaselineError, match="align"):
        fit_baseline(pooled, pd.concat([label, label]).iloc[::-1], seed=3)


def test_fit_baseline_when_single_class_then_baseline_error(features: pd.DataFrame) -> None:
    ones = pd.Series(1.0, index=features.index)
    with pytest.raises(BaselineError, match="both classes"):
        fit_baseline(features, ones, seed=0)


def test_predict_proba_when_feature_missing_then_baseline_error(
    candles: pd.DataFrame, features: pd.DataFrame
) -> None:
    model = fit_baseline(features, sign_label(candles, horizon=4), seed=0)
    with pytest.raises(BaselineError, match="adx_14"):
        model.predict_proba(features.drop(columns=["adx_14"]))
