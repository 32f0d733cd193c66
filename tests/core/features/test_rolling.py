"""Shared and 2-D rolling statistics give the one-window, one-array definitions' bits.

The `_ref_*` functions are the definitions the feature values were first computed with, kept
verbatim: every statistic, however it is served (a window among several of one `Trailing`, a row
of a 2-D input, a covariance reused for a correlation), must equal them bit for bit, NaN
placement included, on arrays with leading and interior NaNs, infinities, zeros and constants.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from core.features.rolling import (
    Trailing,
    correlation,
    diff,
    diffs,
    rolling_cov,
    rolling_max,
    rolling_mean,
    rolling_min,
    rolling_rank_pct,
    rolling_std,
    rolling_var,
)

Array = np.ndarray
WINDOWS = (2, 3, 5, 12)


def _ref_window_sum(x: Array, w: int) -> Array:
    cs = np.concatenate(([0.0], np.cumsum(np.where(np.isnan(x), 0.0, x))))
    return cs[w:] - cs[:-w]


def _ref_enough(x: Array, w: int, need: int) -> Array:
    cn = np.concatenate(([0], np.cumsum(~np.isnan(x))))
    return (cn[w:] - cn[:-w]) >= need


def _ref_first(x: Array) -> float:
    valid = x[~np.isnan(x)]
    return float(valid[0]) if len(valid) else 0.0


def _ref_sum(x: Array, w: int, min_periods: int | None = None) -> Array:
    out = np.full(len(x), np.nan)
    if len(x) >= w:
        out[w - 1 :] = np.where(_ref_enough(x, w, min_periods or w), _ref_window_sum(x, w), np.nan)
    return out


def _ref_mean(x: Array, w: int, min_periods: int | None = None) -> Array:
    out = np.full(len(x), np.nan)
    if len(x) < w:
        return out
    ok = _ref_enough(x, w, min_periods or w)
    total = _ref_window_sum(x, w)
    if min_periods is None or min_periods == w:
        out[w - 1 :] = np.where(ok, total / w, np.nan)
        return out
    cn = np.concatenate(([0], np.cumsum(~np.isnan(x))))
    with np.errstate(invalid="ignore", divide="ignore"):
        out[w - 1 :] = np.where(ok, total / (cn[w:] - cn[:-w]), np.nan)
    return out


def _ref_var(x: Array, w: int) -> Array:
    out = np.full(len(x), np.nan)
    if len(x) < w:
        return out
    xc = x - _ref_first(x)
    s1, s2 = _ref_window_sum(xc, w), _ref_window_sum(xc * xc, w)
    var = np.maximum((s2 - s1 * s1 / w) / (w - 1), 0.0)
    out[w - 1 :] = np.where(_ref_enough(xc, w, w), var, np.nan)
    return out


def _ref_cov(x: Array, y: Array, w: int) -> Array:
    out = np.full(len(x), np.nan)
    if len(x) < w:
        return out
    bad = np.isnan(x) | np.isnan(y)
    xs, ys = np.where(bad, np.nan, x), np.where(bad, np.nan, y)
    xc, yc = xs - _ref_first(xs), ys - _ref_first(ys)
    sx, sy, sxy = _ref_window_sum(xc, w), _ref_window_sum(yc, w), _ref_window_sum(xc * yc, w)
    cov = (sxy - sx * sy / w) / (w - 1)
    out[w - 1 :] = np.where(_ref_enough(xc, w, w), cov, np.nan)
    return out


def _ref_corr(x: Array, y: Array, w: int) -> Array:
    cov = _ref_cov(x, y, w)
    den = np.sqrt(_ref_var(x, w) * _ref_var(y, w))
    out = np.full(len(x), np.nan)
    ok = den > 0
    out[ok] = cov[ok] / den[ok]
    return out


def _ref_rank_pct(x: Array, w: int) -> Array:
    out = np.full(len(x), np.nan)
    if len(x) < w:
        return out
    view = sliding_window_view(x, w)
    last = view[:, -1:]
    less = (view < last).sum(axis=1)
    equal = (view == last).sum(axis=1)
    rank = (less + (equal + 1) / 2) / w
    out[w - 1 :] = np.where(np.isnan(view).any(axis=1), np.nan, rank)
    return out


def _ref_extreme(x: Array, w: int, reduce: str) -> Array:
    out = np.full(len(x), np.nan)
    if len(x) >= w:
        out[w - 1 :] = getattr(sliding_window_view(x, w), reduce)(axis=1)
    return out


def _same(a: Array, b: Array) -> bool:
    """Same shape, NaN places and bits (so -0.0 differs from 0.0)."""
    nan = np.isnan(a)
    return (
        a.shape == b.shape
        and bool((nan == np.isnan(b)).all())
        and bool((a[~nan].view(np.uint64) == b[~nan].view(np.uint64)).all())
    )


_VALUES = st.one_of(
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 1e-300, 1e300, np.nan, np.inf, -np.inf]),
)


@st.composite
def series(draw: st.DrawFn, min_size: int = 0) -> Array:
    """Arrays shaped like feature inputs: a NaN warm-up, interior NaNs, constant stretches."""
    values = draw(st.lists(_VALUES, min_size=min_size, max_size=40))
    lead = draw(st.integers(0, 6))
    if draw(st.booleans()) and values:  # a constant stretch
        start = draw(st.integers(0, len(values) - 1))
        values[start:] = [values[start]] * (len(values) - start)
    return np.array([np.nan] * lead + values, dtype=np.float64)


_PLAIN = st.lists(st.floats(-10, 10, allow_nan=False), min_size=0, max_size=40).map(
    lambda v: np.array([np.nan] * 3 + v, dtype=np.float64)
)
ARRAYS = st.one_of(series(), _PLAIN)


@settings(max_examples=300, deadline=None)
@given(ARRAYS)
def test_trailing_when_windows_share_sums_then_each_equals_its_one_window_definition(
    x: Array,
) -> None:
    shared = Trailing(x)
    with np.errstate(all="ignore"):
        for w in WINDOWS:
            assert _same(shared.sum(w), _ref_sum(x, w))
            assert _same(shared.mean(w), _ref_mean(x, w))
            assert _same(shared.mean(w, min_periods=w - 1), _ref_mean(x, w, w - 1))
            assert _same(shared.var(w), _ref_var(x, w))
            assert _same(shared.std(w), np.sqrt(_ref_var(x, w)))
            assert _same(shared.sum(w, w - 1), _ref_sum(x, w, w - 1))
            assert _same(rolling_mean(x, w), _ref_mean(x, w))
            assert _same(rolling_var(x, w), _ref_var(x, w))
            assert _same(rolling_std(x, w), np.sqrt(_ref_var(x, w)))


@settings(max_examples=200, deadline=None)
@given(st.lists(ARRAYS, min_size=1, max_size=5), st.sampled_from(WINDOWS))
def test_trailing_when_rows_of_2d_then_each_row_equals_the_1d_definition(
    rows: list[Array], w: int
) -> None:
    n = max(len(r) for r in rows)
    block = np.array([np.concatenate((r, np.zeros(n - len(r)))) for r in rows])
    shared = Trailing(block)
    with np.errstate(all="ignore"):
        var, mean, total = shared.var(w), shared.mean(w), shared.sum(w)
        for i, row in enumerate(block):
            assert _same(var[i], _ref_var(row, w))
            assert _same(mean[i], _ref_mean(row, w))
            assert _same(total[i], _ref_sum(row, w))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_cov_and_corr_when_any_inputs_then_equal_the_one_window_definitions(
    data: st.DataObject,
) -> None:
    x = data.draw(ARRAYS)
    y = np.array(data.draw(st.lists(_VALUES, min_size=len(x), max_size=len(x))), dtype=float)
    with np.errstate(all="ignore"):
        for w in WINDOWS:
            assert _same(rolling_cov(x, y, w), _ref_cov(x, y, w))
            shared = correlation(rolling_cov(x, y, w), Trailing(x).var(w), Trailing(y).var(w))
            assert _same(shared, _ref_corr(x, y, w))


@settings(max_examples=300, deadline=None)
@given(ARRAYS)
def test_rank_max_min_when_any_inputs_then_equal_the_sliding_window_definitions(
    x: Array,
) -> None:
    for w in WINDOWS:
        assert _same(rolling_rank_pct(x, w), _ref_rank_pct(x, w))
        # max/min are exact: only a zero's sign may depend on the order they are taken in
        assert np.array_equal(rolling_max(x, w), _ref_extreme(x, w, "max"), equal_nan=True)
        assert np.array_equal(rolling_min(x, w), _ref_extreme(x, w, "min"), equal_nan=True)


@settings(max_examples=200, deadline=None)
@given(ARRAYS, st.lists(st.integers(0, 45), min_size=1, max_size=6))
def test_diffs_when_lags_then_rows_equal_diff(x: Array, lags: list[int]) -> None:
    with np.errstate(all="ignore"):
        rows = diffs(x, lags)
        for row, lag in zip(rows, lags, strict=True):
            assert _same(row, diff(x, lag))


@pytest.mark.parametrize("w", [1, 168, 300])
def test_rank_when_long_or_short_window_then_equals_definition(w: int) -> None:
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=400), 1)  # ties
    x[:20] = np.nan
    x[250] = np.nan
    assert _same(rolling_rank_pct(x, w), _ref_rank_pct(x, w))


EDGES = {
    "infinite first value": [np.nan, np.inf, 1.0, 2.0, 3.0, 4.0, 5.0],
    "negative infinity later": [1.0, 2.0, -np.inf, 4.0, 5.0, 6.0, 7.0],
    "all NaN": [np.nan] * 7,
    "interior NaN": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0, 7.0],
    "constant": [3.0] * 7,
    "signed zeros": [-0.0, 0.0, -0.0, -0.0, 0.0, 0.0, -0.0],
    "empty": [],
}


@pytest.mark.parametrize("values", EDGES.values(), ids=EDGES.keys())
def test_rolling_when_edge_arrays_then_equal_the_definitions(values: list[float]) -> None:
    x = np.array(values, dtype=np.float64)
    y = x[::-1].copy()
    with np.errstate(all="ignore"):
        for w in (2, 3):
            assert _same(Trailing(x).var(w), _ref_var(x, w))
            assert _same(Trailing(x).mean(w, min_periods=1), _ref_mean(x, w, 1))
            assert _same(Trailing(x).sum(w), _ref_sum(x, w))
            assert _same(rolling_cov(x, y, w), _ref_cov(x, y, w))
            shared = correlation(rolling_cov(x, y, w), Trailing(x).var(w), Trailing(y).var(w))
            assert _same(shared, _ref_corr(x, y, w))
            assert _same(rolling_rank_pct(x, w), _ref_rank_pct(x, w))
