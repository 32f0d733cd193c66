"""Trailing-window statistics on numpy arrays, NaN-aware, with no pandas overhead.

Sums, means, variances and covariances come from cumulative sums, so a value at t is fixed by
rows <= t (prefix-stable) and costs O(n) whatever the window. Max, min and rank use sliding
windows. A window holding a NaN gives NaN, as pandas' rolling does (unless `min_periods`).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

Array = np.ndarray


def shift(x: Array, n: int) -> Array:
    out = np.full_like(x, np.nan, dtype=np.float64)
    if n < len(x):
        out[n:] = x[: len(x) - n]
    return out


def diff(x: Array, n: int = 1) -> Array:
    return x - shift(x, n)


def _window_sum(x: Array, w: int) -> Array:
    """Sum over each full window ending at t >= w-1, NaNs counted as 0."""
    cs = np.concatenate(([0.0], np.cumsum(np.where(np.isnan(x), 0.0, x))))
    return cs[w:] - cs[:-w]


def _enough(x: Array, w: int, need: int) -> Array:
    """For each full window, whether it holds at least `need` non-NaN values."""
    nan = np.isnan(x)
    if not nan.any():
        return np.ones(len(x) - w + 1, dtype=bool)
    first = int(np.argmin(nan)) if not nan.all() else len(x)
    if not nan[first:].any():  # NaNs only lead (warm-up): one boundary, no counting
        mask = np.zeros(len(x) - w + 1, dtype=bool)
        mask[max(0, first + need - w) :] = True
        return mask
    cn = np.concatenate(([0], np.cumsum(~nan)))
    return (cn[w:] - cn[:-w]) >= need


def rolling_sum(x: Array, w: int, min_periods: int | None = None) -> Array:
    out = np.full(len(x), np.nan)
    if len(x) < w:
        return out
    out[w - 1 :] = np.where(_enough(x, w, min_periods or w), _window_sum(x, w), np.nan)
    return out


def rolling_mean(x: Array, w: int, min_periods: int | None = None) -> Array:
    out = np.full(len(x), np.nan)
    if len(x) < w:
        return out
    ok = _enough(x, w, min_periods or w)
    total = _window_sum(x, w)
    if min_periods is None or min_periods == w:
        out[w - 1 :] = np.where(ok, total / w, np.nan)
        return out
    cn = np.concatenate(([0], np.cumsum(~np.isnan(x))))
    count = cn[w:] - cn[:-w]
    with np.errstate(invalid="ignore", divide="ignore"):
        out[w - 1 :] = np.where(ok, total / count, np.nan)
    return out


def rolling_cov(x: Array, y: Array, w: int) -> Array:
    """Sample covariance (ddof=1) over full windows; NaN if either side has a NaN."""
    out = np.full(len(x), np.nan)
    if len(x) < w:
        return out
    bad = np.isnan(x) | np.isnan(y)
    xs, ys = np.where(bad, np.nan, x), np.where(bad, np.nan, y)
    # Centre on the first valid value (known from the past alone, so values stay
    # prefix-stable): cumulative sums of small deviations keep their precision.
    xc, yc = xs - _first(xs), ys - _first(ys)
    sx, sy, sxy = _window_sum(xc, w), _window_sum(yc, w), _window_sum(xc * yc, w)
    cov = (sxy - sx * sy / w) / (w - 1)
    out[w - 1 :] = np.where(_enough(xc, w, w), cov, np.nan)
    return out


def _first(x: Array) -> float:
    valid = x[~np.isnan(x)]
    return float(valid[0]) if len(valid) else 0.0


def rolling_var(x: Array, w: int) -> Array:
    """Sample variance (ddof=1) over full windows, from two cumulative sums."""
    out = np.full(len(x), np.nan)
    if len(x) < w:
        return out
    xc = x - _first(x)  # prefix-stable centring keeps the sums small
    s1, s2 = _window_sum(xc, w), _window_sum(xc * xc, w)
    var = np.maximum((s2 - s1 * s1 / w) / (w - 1), 0.0)
    out[w - 1 :] = np.where(_enough(xc, w, w), var, np.nan)
    return out


def rolling_std(x: Array, w: int) -> Array:
    return np.sqrt(rolling_var(x, w))


def rolling_corr(x: Array, y: Array, w: int) -> Array:
    cov = rolling_cov(x, y, w)
    den = np.sqrt(rolling_var(x, w) * rolling_var(y, w))
    out = np.full(len(x), np.nan)
    ok = den > 0
    out[ok] = cov[ok] / den[ok]
    return out


def rolling_max(x: Array, w: int) -> Array:
    out = np.full(len(x), np.nan)
    if len(x) >= w:
        out[w - 1 :] = sliding_window_view(x, w).max(axis=1)
    return out


def rolling_min(x: Array, w: int) -> Array:
    out = np.full(len(x), np.nan)
    if len(x) >= w:
        out[w - 1 :] = sliding_window_view(x, w).min(axis=1)
    return out


def rolling_rank_pct(x: Array, w: int) -> Array:
    """Percentile rank of each value among its trailing window (ties averaged, as pandas)."""
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


def ema(x: Array, span: float) -> Array:
    """EMA with alpha = 2 / (span + 1), seeded with the first non-NaN value (pandas
    ewm(adjust=False)); the input must have no NaN after its first value."""
    out = np.full(len(x), np.nan)
    valid = np.flatnonzero(~np.isnan(x))
    if not len(valid):
        return out
    start = valid[0]
    alpha = 2.0 / (span + 1.0)
    out[start] = x[start]
    if start + 1 < len(x):
        out[start + 1 :], _ = lfilter(
            [alpha], [1.0, alpha - 1.0], x[start + 1 :], zi=[(1.0 - alpha) * x[start]]
        )
    return out
